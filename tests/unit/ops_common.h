/*
 * Shared setup for the CPU op tests: a backend over a 2-thread pool (so the
 * threaded paths run), random tensors, and the check that a bad call fails
 * with the expected code and a message naming the op.
 */
#ifndef TD_TEST_OPS_COMMON_H
#define TD_TEST_OPS_COMMON_H

#include <string.h>

#include "check.h"
#include "backend/backend.h"
#include "core/pool.h"

typedef struct {
    td_ctx ctx;
    td_backend *be;
} ops_env;

static inline int ops_env_init(ops_env *e)
{
    td_ctx_init(&e->ctx);
    if (td_pool_create(&e->ctx, 2, &e->ctx.pool) < 0 ||
        td_backend_cpu_create(&e->ctx, (size_t)64 << 20, &e->be) < 0) {
        fprintf(stderr, "setup failed: %s\n", e->ctx.errmsg);
        return -1;
    }
    return 0;
}

static inline void ops_env_free(ops_env *e)
{
    td_backend_destroy(&e->be);
    td_pool_destroy(&e->ctx.pool);
}

/* A heap f32 tensor filled with uniform values in [-amp, amp). */
static inline td_tensor rand_tensor(ops_env *e, test_rng *r, int ndim, const int64_t *shape, float amp)
{
    td_tensor t;
    if (td_tensor_new(&e->ctx, &t, TD_F32, ndim, shape) < 0) {
        fprintf(stderr, "alloc failed: %s\n", e->ctx.errmsg);
        exit(1);
    }
    test_fill(r, t.data, (size_t)td_numel(&t), amp);
    return t;
}

static inline td_tensor zero_tensor(ops_env *e, td_dtype dt, int ndim, const int64_t *shape)
{
    td_tensor t;
    if (td_tensor_new(&e->ctx, &t, dt, ndim, shape) < 0) {
        fprintf(stderr, "alloc failed: %s\n", e->ctx.errmsg);
        exit(1);
    }
    return t;
}

/* The same values narrowed to dt (the reference then uses the narrowed
 * values widened back, so only our arithmetic is under test). */
static inline td_tensor narrowed(ops_env *e, const td_tensor *src, td_dtype dt)
{
    td_tensor t = zero_tensor(e, dt, src->ndim, src->shape);
    td_from_f32(dt, src->data, t.data, (size_t)td_numel(src));
    td_to_f32(dt, t.data, src->data, (size_t)td_numel(src));
    return t;
}

/* ||y - ref|| / ||mag|| with mag[i] the sum of |terms| that make ref[i]:
 * the error measure for sums, where one output that cancels to ~0 would
 * make a plain relative error meaningless (its f32 bound is ~eps*sqrt(K)
 * relative to mag, not to the result). */
static inline double err_vs_mag(const float *y, const double *ref, const double *mag, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - ref[i];
        num += d * d;
        den += mag[i] * mag[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* An op call must fail with `code` and name `op` in the message. */
#define CHECK_FAILS(e, call, code, op) do {                                          \
        td_ctx_clear(&(e)->ctx);                                                      \
        int rc_ = (call);                                                             \
        CHECK(rc_ == (code), "%s returned %d, expected %d (%s)", #call, rc_, (code),  \
              (e)->ctx.errmsg);                                                       \
        CHECK(strstr((e)->ctx.errmsg, (op)) != NULL, "message '%s' does not name %s",  \
              (e)->ctx.errmsg, (op));                                                 \
        td_ctx_clear(&(e)->ctx);                                                      \
    } while (0)

#define CHECK_OK(e, call) do {                                                        \
        int rc_ = (call);                                                             \
        CHECK(rc_ == 0, "%s returned %d: %s", #call, rc_, (e)->ctx.errmsg);           \
    } while (0)

#endif
