/* td_noise_src: a sampler's noise numbers, generated or user-given (sample.h). */
#include <string.h>

#include "noise.h"
#include "sample.h"

int td_noise_src_get(td_ctx *ctx, const td_noise_src *src, int64_t index, float *x, int64_t numel)
{
    if (index < 0)
        return td_fail(ctx, TD_EINVAL, "noise: negative noise number %lld", (long long)index);
    if (!src->stack) {
        td_noise_fill(src->seed, (uint64_t)index, x, numel);
        return 0;
    }
    if (index >= src->count)
        return td_fail(ctx, TD_EINVAL,
                       "noise: the given noise stack holds %lld noises, the sampler needs noise number %lld "
                       "(0 = initial, then one per stochastic step)",
                       (long long)src->count, (long long)index);
    memcpy(x, src->stack + index * numel, sizeof(float) * (size_t)numel);
    return 0;
}
