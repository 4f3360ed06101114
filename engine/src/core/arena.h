/*
 * A bump allocator for activations: one big block, aligned carving, and a
 * mark/reset pair so a layer's scratch is released in O(1) when it returns.
 * Running out is an error naming the sizes, never a silent fallback.
 */
#ifndef TD_CORE_ARENA_H
#define TD_CORE_ARENA_H

#include <stddef.h>
#include "tensor.h"

typedef struct td_arena {
    unsigned char *base;
    size_t size, used, peak;
} td_arena;

int td_arena_init(td_ctx *ctx, td_arena *a, size_t bytes);
void td_arena_free(td_arena *a);
/* 64-byte aligned, uninitialised. NULL and a TD_ENOMEM error when full. */
void *td_arena_alloc(td_ctx *ctx, td_arena *a, size_t bytes);
int td_arena_tensor(td_ctx *ctx, td_arena *a, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape);
static inline size_t td_arena_mark(const td_arena *a) { return a->used; }
static inline void td_arena_reset(td_arena *a, size_t mark) { a->used = mark; }

#endif
