/*
 * From a device string (td_engine_config.device) to a backend: "cpu",
 * "cuda" (device 0), "cuda:N", or "auto" / NULL / "" (the first CUDA device
 * when the build has CUDA and a device is present, else the CPU).
 */
#include <stdlib.h>
#include <string.h>

#include "backend.h"

/* "cuda" -> 0, "cuda:N" -> N (decimal, no sign, below 4096); -1 otherwise. */
static int cuda_index(const char *s)
{
    long v = 0;
    if (strncmp(s, "cuda", 4) != 0)
        return -1;
    s += 4;
    if (*s == 0)
        return 0;
    if (*s++ != ':' || *s == 0)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v >= 4096)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v < 4096 ? (int)v : -1;
}

int td_backend_create_for_device(td_ctx *ctx, const char *device, size_t arena_bytes, td_backend **out)
{
    int idx;

    *out = NULL;
    if (!device || !*device || strcmp(device, "auto") == 0) {
#ifdef TD_HAVE_CUDA
        if (td_cuda_device_count() > 0)
            return td_backend_cuda_create(ctx, 0, arena_bytes, out);
#endif
        return td_backend_cpu_create(ctx, arena_bytes, out);
    }
    if (strcmp(device, "cpu") == 0)
        return td_backend_cpu_create(ctx, arena_bytes, out);
    idx = cuda_index(device);
    if (idx < 0)
        return td_fail(ctx, TD_EINVAL, "device '%s': expected auto, cpu, cuda or cuda:N", device);
#ifdef TD_HAVE_CUDA
    return td_backend_cuda_create(ctx, idx, arena_bytes, out);
#else
    return td_fail(ctx, TD_EUNSUPPORTED, "device '%s': turbodiff was built without CUDA", device);
#endif
}
