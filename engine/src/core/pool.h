/*
 * A small fork-join thread pool: td_pool_for splits [0, n) into one
 * contiguous range per thread (the caller is one of them) and returns when
 * all are done. Ops use it for loops OpenBLAS does not cover.
 */
#ifndef TD_CORE_POOL_H
#define TD_CORE_POOL_H

#include <stdint.h>
#include "ctx.h"

typedef void (*td_range_fn)(void *arg, int64_t begin, int64_t end);

/* nthreads <= 0: one per online core. */
int td_pool_create(td_ctx *ctx, int nthreads, td_pool **out);
void td_pool_destroy(td_pool **pool);
int td_pool_threads(const td_pool *pool);

/* Run fn over [0, n) split across the pool. pool may be NULL (runs inline).
 * Ranges smaller than min_chunk are not split further. */
void td_pool_for(td_pool *pool, int64_t n, int64_t min_chunk, td_range_fn fn, void *arg);

#endif
