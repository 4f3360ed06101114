/*
 * Element-wise ops and row softmax. All run on the pool over flat element
 * ranges (rows for softmax); "in place ok" for every one of them since each
 * output element depends only on the same input element (or its row).
 */
#include <math.h>
#include <stdlib.h>

#include "cpu.h"
#include "cpu_math.h"

#define PW_CHUNK 4096   /* elements below which a range is not split */

typedef struct {
    const float *a, *b, *c;
    float *y;
    int64_t nb, c_len;
    float lo, hi;
} pw_args;

/* torch's approximate='tanh' GELU, 0.5 x (1 + tanh(u)), evaluated as the
 * identical x / (1 + exp(-2u)): for negative x, 1 + tanh(u) cancels and
 * loses all relative precision in f32, the sigmoid form does not. */
static void gelu_range(void *arg, int64_t i0, int64_t i1)
{
    const pw_args *p = arg;
    const float k2 = 2.0f * 0.7978845608028654f;   /* 2 sqrt(2/pi) */
    for (int64_t i = i0; i < i1; i++) {
        float x = p->a[i];
        p->y[i] = x / (1.0f + td_expf(-k2 * (x + 0.044715f * x * x * x)));
    }
}

static void silu_range(void *arg, int64_t i0, int64_t i1)
{
    const pw_args *p = arg;
    for (int64_t i = i0; i < i1; i++) {
        float x = p->a[i];
        p->y[i] = x / (1.0f + td_expf(-x));
    }
}

static void add_range(void *arg, int64_t i0, int64_t i1)
{
    const pw_args *p = arg;
    for (int64_t i = i0; i < i1; i++)
        p->y[i] = p->a[i] + p->b[i % p->nb];
}

static void mul_range(void *arg, int64_t i0, int64_t i1)
{
    const pw_args *p = arg;
    for (int64_t i = i0; i < i1; i++)
        p->y[i] = p->a[i] * p->b[i % p->nb];
}

/* rows of c_len: y = a * (1 + c) + b with b = shift, c = scale */
static void modulate_rows(void *arg, int64_t r0, int64_t r1)
{
    const pw_args *p = arg;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = p->a + r * p->c_len;
        float *y = p->y + r * p->c_len;
        for (int64_t j = 0; j < p->c_len; j++)
            y[j] = x[j] * (1.0f + p->c[j]) + p->b[j];
    }
}

/* rows of c_len: y (the residual, in place) += a * c with c = gate */
static void add_gated_rows(void *arg, int64_t r0, int64_t r1)
{
    const pw_args *p = arg;
    for (int64_t r = r0; r < r1; r++) {
        const float *u = p->a + r * p->c_len;
        float *x = p->y + r * p->c_len;
        for (int64_t j = 0; j < p->c_len; j++)
            x[j] += u[j] * p->c[j];
    }
}

static void softmax_rows(void *arg, int64_t r0, int64_t r1)
{
    const pw_args *p = arg;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = p->a + r * p->c_len;
        float *y = p->y + r * p->c_len;
        float mx = td_row_max(x, p->c_len);
        double s = 0;
        float inv;
        for (int64_t j = 0; j < p->c_len; j++)
            y[j] = x[j];
        td_row_exp_sub(y, p->c_len, mx);
        for (int64_t j = 0; j < p->c_len; j++)
            s += y[j];
        inv = (float)(1.0 / s);
        for (int64_t j = 0; j < p->c_len; j++)
            y[j] *= inv;
    }
}

static int unary(td_backend *be, const char *op, const td_tensor *x, td_tensor *y, td_range_fn fn)
{
    pw_args p;
    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_same_rows(be->ctx, op, x, y));
    p = (pw_args){ .a = x->data, .y = y->data };
    td_pool_for(td_cpu_pool(be), td_numel(x), PW_CHUNK, fn, &p);
    return 0;
}

int td_cpu_gelu_tanh(td_backend *be, const td_tensor *x, td_tensor *y)
{
    return unary(be, "gelu_tanh", x, y, gelu_range);
}

int td_cpu_silu(td_backend *be, const td_tensor *x, td_tensor *y)
{
    return unary(be, "silu", x, y, silu_range);
}

int td_cpu_softmax(td_backend *be, const td_tensor *x, td_tensor *y)
{
    static const char op[] = "softmax";
    pw_args p;
    int64_t c;
    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_same_rows(be->ctx, op, x, y));
    c = td_cpu_lastdim(x);
    if (c == 0)
        return 0;
    p = (pw_args){ .a = x->data, .y = y->data, .c_len = c };
    td_pool_for(td_cpu_pool(be), td_numel(x) / c, 1 + PW_CHUNK / c, softmax_rows, &p);
    return 0;
}

static int binary(td_backend *be, const char *op, const td_tensor *a, const td_tensor *b,
                  td_tensor *y, td_range_fn fn)
{
    char s1[96], s2[96];
    int64_t n, nb;
    float *owned;
    pw_args p;

    TD_TRY(td_check_act(be, op, "a", a));
    TD_TRY(td_cpu_check_weight(be, op, "b", b));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_same_rows(be->ctx, op, a, y));
    n = td_numel(a);
    nb = td_numel(b);
    if (nb == 0 ? n != 0 : n % nb != 0)
        return td_fail(be->ctx, TD_ESHAPE, "%s: b %s does not broadcast over a %s", op,
                       td_shape_str(b, s2, sizeof(s2)), td_shape_str(a, s1, sizeof(s1)));
    if (n == 0)
        return 0;
    p = (pw_args){ .a = a->data, .y = y->data, .nb = nb };
    if (!(p.b = td_cpu_vec_f32(be, b, &owned)))
        return TD_ENOMEM;
    td_pool_for(td_cpu_pool(be), n, PW_CHUNK, fn, &p);
    free(owned);
    return 0;
}

int td_cpu_add(td_backend *be, const td_tensor *a, const td_tensor *b, td_tensor *y)
{
    return binary(be, "add", a, b, y, add_range);
}

int td_cpu_mul(td_backend *be, const td_tensor *a, const td_tensor *b, td_tensor *y)
{
    return binary(be, "mul", a, b, y, mul_range);
}

int td_cpu_modulate(td_backend *be, const td_tensor *x, const td_tensor *shift,
                    const td_tensor *scale, td_tensor *y)
{
    static const char op[] = "modulate";
    float *o1 = NULL, *o2 = NULL;
    int64_t c;
    pw_args p;
    int rc = 0;

    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_same_rows(be->ctx, op, x, y));
    c = td_cpu_lastdim(x);
    TD_TRY(td_check_float_vec(be->ctx, op, "shift", shift, c));
    TD_TRY(td_check_float_vec(be->ctx, op, "scale", scale, c));
    if (c == 0)
        return 0;
    p = (pw_args){ .a = x->data, .y = y->data, .c_len = c };
    if (!(p.b = td_cpu_vec_f32(be, shift, &o1)) || !(p.c = td_cpu_vec_f32(be, scale, &o2)))
        rc = TD_ENOMEM;
    else
        td_pool_for(td_cpu_pool(be), td_numel(x) / c, 1 + PW_CHUNK / c, modulate_rows, &p);
    free(o1);
    free(o2);
    return rc;
}

int td_cpu_add_gated(td_backend *be, td_tensor *x, const td_tensor *y, const td_tensor *gate)
{
    static const char op[] = "add_gated";
    float *owned;
    int64_t c;
    pw_args p;

    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_same_rows(be->ctx, op, x, y));
    c = td_cpu_lastdim(x);
    TD_TRY(td_check_float_vec(be->ctx, op, "gate", gate, c));
    if (c == 0)
        return 0;
    p = (pw_args){ .a = y->data, .y = x->data, .c_len = c };
    if (!(p.c = td_cpu_vec_f32(be, gate, &owned)))
        return TD_ENOMEM;
    td_pool_for(td_cpu_pool(be), td_numel(x) / c, 1 + PW_CHUNK / c, add_gated_rows, &p);
    free(owned);
    return 0;
}

static void clamp_range(void *arg, int64_t i0, int64_t i1)
{
    const pw_args *p = arg;
    float lo = p->lo, hi = p->hi;
    for (int64_t i = i0; i < i1; i++) {
        float x = p->a[i];
        p->y[i] = x < lo ? lo : x > hi ? hi : x;
    }
}

int td_cpu_clamp(td_backend *be, const td_tensor *x, float lo, float hi, td_tensor *y)
{
    pw_args p;
    TD_TRY(td_check_clamp(be, x, lo, hi, y));
    p = (pw_args){ .a = x->data, .y = y->data, .lo = lo, .hi = hi };
    td_pool_for(td_cpu_pool(be), td_numel(x), PW_CHUNK, clamp_range, &p);
    return 0;
}

/* channels of c_len elements: y = x * scale[ch] + shift[ch], b = shift, c = scale */
static void scale_shift_channels(void *arg, int64_t c0, int64_t c1)
{
    const pw_args *p = arg;
    for (int64_t ch = c0; ch < c1; ch++) {
        const float *x = p->a + ch * p->c_len;
        float *y = p->y + ch * p->c_len, s = p->c[ch], b = p->b[ch];
        for (int64_t j = 0; j < p->c_len; j++)
            y[j] = x[j] * s + b;
    }
}

int td_cpu_scale_shift(td_backend *be, const td_tensor *x, const td_tensor *scale,
                       const td_tensor *shift, td_tensor *y)
{
    float *o1 = NULL, *o2 = NULL;
    int64_t c;
    pw_args p;
    int rc = 0;

    TD_TRY(td_check_scale_shift(be, x, scale, shift, y));
    c = x->shape[0];
    if (td_numel(x) == 0)
        return 0;
    p = (pw_args){ .a = x->data, .y = y->data, .c_len = td_numel(x) / c };
    if (!(p.b = td_cpu_vec_f32(be, shift, &o1)) || !(p.c = td_cpu_vec_f32(be, scale, &o2)))
        rc = TD_ENOMEM;
    else
        td_pool_for(td_cpu_pool(be), c, 1 + PW_CHUNK / p.c_len, scale_shift_channels, &p);
    free(o1);
    free(o2);
    return rc;
}
