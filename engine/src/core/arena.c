#include "arena.h"

#include <stdlib.h>

#define ARENA_ALIGN 64

int td_arena_init(td_ctx *ctx, td_arena *a, size_t bytes)
{
    a->used = a->peak = 0;
    a->size = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    a->base = aligned_alloc(ARENA_ALIGN, a->size ? a->size : ARENA_ALIGN);
    if (!a->base)
        return td_fail(ctx, TD_ENOMEM, "cannot allocate a %zu-byte activation arena", bytes);
    return 0;
}

void td_arena_free(td_arena *a)
{
    free(a->base);
    a->base = NULL;
    a->size = a->used = 0;
}

void *td_arena_alloc(td_ctx *ctx, td_arena *a, size_t bytes)
{
    size_t need = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    void *p;

    if (need < bytes || need > a->size - a->used) {
        td_fail(ctx, TD_ENOMEM, "activation arena full: %zu bytes asked, %zu of %zu free",
                bytes, a->size - a->used, a->size);
        return NULL;
    }
    p = a->base + a->used;
    a->used += need;
    if (a->used > a->peak)
        a->peak = a->used;
    return p;
}

int td_arena_tensor(td_ctx *ctx, td_arena *a, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape)
{
    int64_t n = td_checked_numel(ndim, shape);
    void *p;

    if (ndim < 0 || ndim > TD_MAX_DIMS || n < 0)
        return td_fail(ctx, TD_EINVAL, "arena tensor: bad rank or dims");
    p = td_arena_alloc(ctx, a, (size_t)n * td_dtype_size(dtype));
    if (!p)
        return TD_ENOMEM;
    *t = td_view(p, dtype, ndim, shape);
    return 0;
}
