/*
 * Canonical names: checkpoint wrappers are stripped ("model.diffusion_model."
 * of ComfyUI, "net." of TurboDiffusion, "module." of DDP, "state_dict." and
 * "model." of training checkpoints), model-owned names (HF T5 "encoder.",
 * "shared.", Wan VAE "decoder.") are left alone, and stored names still work.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "io/weights_internal.h"

static const char *const stored[] = {
    "model.diffusion_model.blocks.0.ffn.0.weight",
    "net.blocks.1.ffn.0.weight",
    "module.head.head.weight",
    "state_dict.model.patch_embedding.weight",
    "encoder.block.0.layer.0.SelfAttention.q.weight",
    "shared.weight",
    "decoder.conv1.weight",
    "model.",
};

int main(void)
{
    char header[4096];
    size_t used = 0, n = sizeof(stored) / sizeof(stored[0]);
    td_ctx ctx;
    td_weights *w = NULL;

    used += (size_t)snprintf(header, sizeof(header), "{");
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(header + used, sizeof(header) - used,
                                 "%s\"%s\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%zu,%zu]}",
                                 i ? "," : "", stored[i], i, i + 1);
    used += (size_t)snprintf(header + used, sizeof(header) - used, "}");
    uint8_t *file = malloc(8 + used + n);
    for (int i = 0; i < 8; i++)
        file[i] = (uint8_t)(used >> (8 * i));
    memcpy(file + 8, header, used);
    for (size_t i = 0; i < n; i++)
        file[8 + used + i] = (uint8_t)(100 + i);

    td_ctx_init(&ctx);
    /* The store takes the heap buffer over. */
    CHECK(td_weights_open_bytes(&ctx, "names.safetensors", file, 8 + used + n, TD_BYTES_HEAP, &w) == 0,
          "%s", ctx.errmsg);
    if (!w)
        return check_summary();
    static const struct { const char *name; int value; } look[] = {
        { "blocks.0.ffn.0.weight", 100 }, { "blocks.1.ffn.0.weight", 101 },
        { "head.head.weight", 102 }, { "patch_embedding.weight", 103 },
        { "encoder.block.0.layer.0.SelfAttention.q.weight", 104 }, { "shared.weight", 105 },
        { "decoder.conv1.weight", 106 }, { "model.", 107 },
        { "net.blocks.1.ffn.0.weight", 101 }, { "model.diffusion_model.blocks.0.ffn.0.weight", 100 },
        { "diffusion_model.blocks.0.ffn.0.weight", -1 }, { "block.0.layer.0.SelfAttention.q.weight", -1 },
        { "", -1 },
    };
    for (size_t i = 0; i < sizeof(look) / sizeof(look[0]); i++) {
        const td_tensor *t = td_weights_find(w, look[i].name);
        int got = t ? *(const uint8_t *)t->data : -1;
        CHECK(got == look[i].value, "'%s' -> %d, want %d", look[i].name, got, look[i].value);
    }
    CHECK(td_weights_has_prefix(w, "blocks.") && td_weights_has_prefix(w, "encoder.block.") &&
          !td_weights_has_prefix(w, "model.diffusion_model.") && !td_weights_has_prefix(w, "net."),
          "prefixes are canonical");
    CHECK(td_weights_count(w) == (int)n && !strcmp(td_weights_name(w, 0), stored[0]) &&
          td_weights_name(w, (int)n) == NULL && td_weights_tensor(w, -1) == NULL, "file order, bounds");
    td_weights_close(&w);
    return check_summary();
}
