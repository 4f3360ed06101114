/*
 * From a device string (td_engine_config.device) to a backend: "cpu",
 * "cuda" (device 0), "cuda:N" or "cudaN" (FFmpeg's option parser splits
 * filter arguments on ':', so the colon-free spelling works unescaped), or
 * "auto" / NULL / "" (the first CUDA device when the build has CUDA and a
 * device is present, else the CPU).
 */
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#define MAX_CUDA_INDEX 4095

/* "cuda" -> 0, "cuda:N" / "cudaN" -> N (decimal digits only); -1 otherwise. */
static int cuda_index(const char *s)
{
    long v = 0;
    if (strncmp(s, "cuda", 4) != 0)
        return -1;
    s += 4;
    if (*s == 0)
        return 0;
    if (*s == ':')
        s++;
    if (*s == 0)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > MAX_CUDA_INDEX)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v <= MAX_CUDA_INDEX ? (int)v : -1;
}

int td_device_parse(td_ctx *ctx, const char *device, int *cuda)
{
    int idx, n;

    *cuda = -1;
    if (!device || !*device || strcmp(device, "auto") == 0) {
#ifdef TD_HAVE_CUDA
        if (td_cuda_device_count() > 0)
            *cuda = 0;
#endif
        return 0;
    }
    if (strcmp(device, "cpu") == 0)
        return 0;
    idx = cuda_index(device);
    if (idx < 0)
        return td_fail(ctx, TD_EINVAL, "device '%s': expected auto, cpu, cuda, cuda:N or cudaN", device);
#ifdef TD_HAVE_CUDA
    n = td_cuda_device_count();
    if (n == 0)
        return td_fail(ctx, TD_EDEVICE, "device '%s': no CUDA device is present (the CUDA driver "
                       "reports none); use device=cpu", device);
    if (idx >= n)
        return td_fail(ctx, TD_EINVAL, "device '%s': there %s %d CUDA device%s (cuda:0..cuda:%d)",
                       device, n == 1 ? "is" : "are", n, n == 1 ? "" : "s", n - 1);
    *cuda = idx;
    return 0;
#else
    (void)n;
    return td_fail(ctx, TD_EUNSUPPORTED, "device '%s': this libturbodiff was built without CUDA "
                   "(rebuild it where the CUDA toolkit is installed, or use device=cpu)", device);
#endif
}

int td_backend_create_for_device(td_ctx *ctx, const char *device, size_t arena_bytes, td_backend **out)
{
    int cuda;

    *out = NULL;
    TD_TRY(td_device_parse(ctx, device, &cuda));
    if (cuda < 0)
        return td_backend_cpu_create(ctx, arena_bytes, out);
#ifdef TD_HAVE_CUDA
    return td_backend_cuda_create(ctx, cuda, arena_bytes, out);
#else
    return td_fail(ctx, TD_EUNSUPPORTED, "device '%s': this libturbodiff was built without CUDA", device);
#endif
}
