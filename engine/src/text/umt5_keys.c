/*
 * Tensor names of the two umT5 encoder files in the wild: Wan's own
 * T5Encoder state dict (models_t5_umt5-xxl-enc-bf16.pth) and the
 * transformers layout that Hugging Face and ComfyUI (umt5_xxl_*.safetensors)
 * ship. Names are canonical (the weight store strips "model." and similar).
 */
#include <stdio.h>

#include "umt5.h"

static const td_umt5_keys wan_keys = {
    .norm1 = "blocks.%d.norm1.weight",
    .q = "blocks.%d.attn.q.weight",
    .k = "blocks.%d.attn.k.weight",
    .v = "blocks.%d.attn.v.weight",
    .o = "blocks.%d.attn.o.weight",
    .rel_bias = "blocks.%d.pos_embedding.embedding.weight",
    .norm2 = "blocks.%d.norm2.weight",
    .wi_gate = "blocks.%d.ffn.gate.0.weight",
    .wi_up = "blocks.%d.ffn.fc1.weight",
    .wo = "blocks.%d.ffn.fc2.weight",
    .final_norm = "norm.weight",
    .embed = { "token_embedding.weight", NULL },
};

static const td_umt5_keys hf_keys = {
    .norm1 = "encoder.block.%d.layer.0.layer_norm.weight",
    .q = "encoder.block.%d.layer.0.SelfAttention.q.weight",
    .k = "encoder.block.%d.layer.0.SelfAttention.k.weight",
    .v = "encoder.block.%d.layer.0.SelfAttention.v.weight",
    .o = "encoder.block.%d.layer.0.SelfAttention.o.weight",
    .rel_bias = "encoder.block.%d.layer.0.SelfAttention.relative_attention_bias.weight",
    .norm2 = "encoder.block.%d.layer.1.layer_norm.weight",
    .wi_gate = "encoder.block.%d.layer.1.DenseReluDense.wi_0.weight",
    .wi_up = "encoder.block.%d.layer.1.DenseReluDense.wi_1.weight",
    .wo = "encoder.block.%d.layer.1.DenseReluDense.wo.weight",
    .final_norm = "encoder.final_layer_norm.weight",
    .embed = { "encoder.embed_tokens.weight", "shared.weight" },
};

/* By layer 0's query projection, which every encoder of either layout has. */
int td_umt5_detect_layout(td_ctx *ctx, const td_weights *w, td_umt5_layout *out)
{
    if (td_weights_find(w, "blocks.0.attn.q.weight")) {
        *out = TD_UMT5_LAYOUT_WAN;
        return 0;
    }
    if (td_weights_find(w, "encoder.block.0.layer.0.SelfAttention.q.weight")) {
        *out = TD_UMT5_LAYOUT_HF;
        return 0;
    }
    return td_fail(ctx, TD_EFORMAT,
                   "%s: not a umT5 encoder: neither Wan's blocks.0.attn.q.weight nor "
                   "transformers' encoder.block.0.layer.0.SelfAttention.q.weight",
                   td_weights_path(w));
}

const td_umt5_keys *td_umt5_keys_of(td_umt5_layout layout)
{
    return layout == TD_UMT5_LAYOUT_WAN ? &wan_keys : &hf_keys;
}
