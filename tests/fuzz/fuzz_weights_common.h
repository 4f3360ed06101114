/* Shared by the weight-file fuzzers: open from memory and touch every byte
 * each tensor view reaches, so a view past its storage trips ASan. */
#ifndef TD_FUZZ_WEIGHTS_COMMON_H
#define TD_FUZZ_WEIGHTS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "core/sha256.h"
#include "io/weights_internal.h"

static void fuzz_open_weights(const uint8_t *data, size_t size)
{
    td_ctx ctx;
    td_weights *w = NULL;

    td_ctx_init(&ctx);
    if (td_weights_open_bytes(&ctx, "fuzz", data, size, TD_BYTES_NONE, &w) < 0)
        return;
    for (int i = 0; i < td_weights_count(w); i++) {
        const td_tensor *t = td_weights_tensor(w, i);
        uint8_t dig[32];
        /* Expanded views (stride 0) may name far more elements than bytes:
         * hash the small ones, and for the rest read the last element. */
        if (td_numel(t) <= (1 << 16)) {
            td_sha256_tensor(t, dig);
        } else {
            int64_t off = 0;
            for (int d = 0; d < t->ndim; d++)
                off += (t->shape[d] - 1) * t->stride[d];
            volatile uint8_t sink = ((const uint8_t *)t->data)[(off + 1) * (int64_t)td_dtype_size(t->dtype) - 1];
            (void)sink;
        }
        (void)td_weights_find(w, td_weights_name(w, i));
    }
    td_weights_close(&w);
}

#endif
