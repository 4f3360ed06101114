/*
 * Key maps of the Wan DiT. Module names (".weight"/".bias" or, for
 * TurboDiffusion's Int8Linear, ".int8_weight"/".scale"/".bias" are appended
 * by the loader):
 *  - Wan layout: Wan-Video/Wan2.1 checkpoints, ComfyUI's repackaged files and
 *    TurboDiffusion's (thu-ml/TurboDiffusion rcm/networks/wan2pt1.py); the
 *    weight store already strips "model.diffusion_model." and "net.". Wan's
 *    norm3 is the affine LayerNorm in front of the cross-attention.
 *  - diffusers' WanTransformer3DModel (0.42): condition_embedder.*, attn1 /
 *    attn2 with to_out.0, ffn.net.0.proj, scale_shift_table; its norm2 is
 *    Wan's norm3 (the FFN norm has no weights in either).
 * SLA checkpoints add proj_l under self_attn.attn_op.local_attn (TurboDiffusion
 * modify_model.py replaces attn_op.local_attn with SparseLinearAttention);
 * diffusers has no such module.
 */
#include <stdio.h>

#include "dit_internal.h"

static const char *const names[DK_COUNT][2] = {
    [DK_PATCH] = { "patch_embedding", "patch_embedding" },
    [DK_TEXT0] = { "text_embedding.0", "condition_embedder.text_embedder.linear_1" },
    [DK_TEXT2] = { "text_embedding.2", "condition_embedder.text_embedder.linear_2" },
    [DK_TIME0] = { "time_embedding.0", "condition_embedder.time_embedder.linear_1" },
    [DK_TIME2] = { "time_embedding.2", "condition_embedder.time_embedder.linear_2" },
    [DK_TPROJ] = { "time_projection.1", "condition_embedder.time_proj" },
    [DK_HEAD] = { "head.head", "proj_out" },
    [DK_HEAD_MOD] = { "head.modulation", "scale_shift_table" },
    [DK_MOD] = { "blocks.%d.modulation", "blocks.%d.scale_shift_table" },
    [DK_NORM3] = { "blocks.%d.norm3", "blocks.%d.norm2" },
    [DK_SA_Q] = { "blocks.%d.self_attn.q", "blocks.%d.attn1.to_q" },
    [DK_SA_K] = { "blocks.%d.self_attn.k", "blocks.%d.attn1.to_k" },
    [DK_SA_V] = { "blocks.%d.self_attn.v", "blocks.%d.attn1.to_v" },
    [DK_SA_O] = { "blocks.%d.self_attn.o", "blocks.%d.attn1.to_out.0" },
    [DK_SA_NQ] = { "blocks.%d.self_attn.norm_q", "blocks.%d.attn1.norm_q" },
    [DK_SA_NK] = { "blocks.%d.self_attn.norm_k", "blocks.%d.attn1.norm_k" },
    [DK_CA_Q] = { "blocks.%d.cross_attn.q", "blocks.%d.attn2.to_q" },
    [DK_CA_K] = { "blocks.%d.cross_attn.k", "blocks.%d.attn2.to_k" },
    [DK_CA_V] = { "blocks.%d.cross_attn.v", "blocks.%d.attn2.to_v" },
    [DK_CA_O] = { "blocks.%d.cross_attn.o", "blocks.%d.attn2.to_out.0" },
    [DK_CA_NQ] = { "blocks.%d.cross_attn.norm_q", "blocks.%d.attn2.norm_q" },
    [DK_CA_NK] = { "blocks.%d.cross_attn.norm_k", "blocks.%d.attn2.norm_k" },
    [DK_FFN0] = { "blocks.%d.ffn.0", "blocks.%d.ffn.net.0.proj" },
    [DK_FFN2] = { "blocks.%d.ffn.2", "blocks.%d.ffn.net.2" },
    [DK_PROJ_L] = { "blocks.%d.self_attn.attn_op.local_attn.proj_l", NULL },
};

const char *td_dit_key_name(td_dit_layout l, td_dit_key k, int b, char *buf, size_t size)
{
    const char *fmt = names[k][l];
    if (!fmt)
        return NULL;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(buf, size, fmt, b);
#pragma GCC diagnostic pop
    return buf;
}

td_dit_layout td_dit_detect_layout(const td_weights *w)
{
    return td_weights_has_prefix(w, "condition_embedder.") ? TD_DIT_KEYS_DIFFUSERS : TD_DIT_KEYS_WAN;
}
