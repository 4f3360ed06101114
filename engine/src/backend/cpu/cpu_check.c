/*
 * Argument checks shared by the CPU ops, so every op rejects a mismatch with
 * a message naming itself and the tensor, and the widening helpers that turn
 * stored weights (f32, bf16, f16) into f32 tiles.
 */
#include <stdlib.h>

#include "cpu.h"

static int is_float(td_dtype t)
{
    return t == TD_F32 || t == TD_BF16 || t == TD_F16;
}

int td_cpu_check_weight(td_backend *be, const char *op, const char *name, const td_tensor *t)
{
    char s[96];
    if (!t || (!t->data && td_numel(t) > 0))
        return td_fail(be->ctx, TD_EINVAL, "%s: %s is missing", op, name);
    if (!is_float(t->dtype))
        return td_fail(be->ctx, TD_EINVAL, "%s: %s %s must be f32, bf16 or f16",
                       op, name, td_shape_str(t, s, sizeof(s)));
    if (!td_is_contiguous(t))
        return td_fail(be->ctx, TD_EINVAL, "%s: %s %s must be contiguous",
                       op, name, td_shape_str(t, s, sizeof(s)));
    return 0;
}

const float *td_cpu_vec_f32(td_backend *be, const td_tensor *t, float **owned)
{
    int64_t n = td_numel(t);
    *owned = NULL;
    if (t->dtype == TD_F32)
        return t->data;
    *owned = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!*owned) {
        td_fail(be->ctx, TD_ENOMEM, "cannot widen a %lld-element vector", (long long)n);
        return NULL;
    }
    td_to_f32(t->dtype, t->data, *owned, (size_t)n);
    return *owned;
}

typedef struct {
    td_dtype dt;
    const unsigned char *src;
    size_t esize;
    int64_t ld, cols;
    float *dst;
} widen_args;

static void widen_rows(void *arg, int64_t r0, int64_t r1)
{
    const widen_args *a = arg;
    for (int64_t r = r0; r < r1; r++)
        td_to_f32(a->dt, a->src + (size_t)(r * a->ld) * a->esize, a->dst + r * a->cols,
                  (size_t)a->cols);
}

void td_cpu_widen_tile(td_backend *be, td_dtype dt, const void *src, int64_t ld,
                       int64_t rows, int64_t cols, float *dst)
{
    widen_args a = { dt, src, td_dtype_size(dt), ld, cols, dst };
    td_pool_for(td_cpu_pool(be), rows, 8, widen_rows, &a);
}

int td_cpu_check_linear_io(td_backend *be, const char *op, const td_tensor *x, const char *w_name,
                           const td_tensor *w, const td_tensor *bias, const td_tensor *y, int64_t *m)
{
    char a[96];
    int64_t n = w->shape[0], k = w->shape[1];

    TD_TRY(td_check_linear_shapes(be->ctx, op, x, w_name, w, y, m));
    if (bias)
        TD_TRY(td_check_float_vec(be->ctx, op, "bias", bias, n));
    if (*m > INT32_MAX || n > INT32_MAX || k > INT32_MAX)
        return td_fail(be->ctx, TD_EINVAL, "%s: x %s is past sgemm's 32-bit sizes", op,
                       td_shape_str(x, a, sizeof(a)));
    return 0;
}
