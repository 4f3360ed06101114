/*
 * Normalisations: LayerNorm and RMSNorm over the last dim (row-wise, the
 * pool splits rows), and the Wan VAE's channel-first RMS norm (the pool
 * splits positions; channels are walked row by row so reads stay
 * sequential). Sums are taken in double: a row holds up to 5120 values and
 * the result must match a double reference to ~1e-6.
 */
#include <math.h>
#include <stdlib.h>

#include "cpu.h"

typedef struct {
    const float *x, *w, *b;
    float *y;
    int64_t c;
    float eps;
} row_args;

static void layernorm_rows(void *arg, int64_t r0, int64_t r1)
{
    const row_args *a = arg;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = a->x + r * a->c;
        float *y = a->y + r * a->c;
        double s = 0, ss = 0, mean, rstd;
        for (int64_t i = 0; i < a->c; i++)
            s += x[i];
        mean = s / (double)a->c;
        for (int64_t i = 0; i < a->c; i++) {
            double d = x[i] - mean;
            ss += d * d;
        }
        rstd = 1.0 / sqrt(ss / (double)a->c + (double)a->eps);
        /* x - mean in double: with a large mean and a small spread, an f32
         * mean would cost the centred values most of their precision */
        for (int64_t i = 0; i < a->c; i++) {
            float v = (float)((x[i] - mean) * rstd);
            if (a->w)
                v *= a->w[i];
            if (a->b)
                v += a->b[i];
            y[i] = v;
        }
    }
}

static void rmsnorm_rows(void *arg, int64_t r0, int64_t r1)
{
    const row_args *a = arg;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = a->x + r * a->c;
        float *y = a->y + r * a->c;
        double ss = 0;
        float rstd;
        for (int64_t i = 0; i < a->c; i++)
            ss += (double)x[i] * x[i];
        rstd = (float)(1.0 / sqrt(ss / (double)a->c + (double)a->eps));
        for (int64_t i = 0; i < a->c; i++)
            y[i] = a->w ? x[i] * rstd * a->w[i] : x[i] * rstd;
    }
}

static int run_rows(td_backend *be, const char *op, const td_tensor *x, const td_tensor *weight,
                    const td_tensor *bias, float eps, td_tensor *y, td_range_fn fn)
{
    int64_t c, rows;
    float *ow = NULL, *ob = NULL;
    row_args a;
    int rc = 0;

    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_same_rows(be->ctx, op, x, y));
    c = td_cpu_lastdim(x);
    if (weight)
        TD_TRY(td_check_float_vec(be->ctx, op, "weight", weight, c));
    if (bias)
        TD_TRY(td_check_float_vec(be->ctx, op, "bias", bias, c));
    if (!(eps >= 0.0f))
        return td_fail(be->ctx, TD_EINVAL, "%s: eps %g must be >= 0", op, eps);
    if (c == 0)
        return 0;
    rows = td_numel(x) / c;
    a = (row_args){ x->data, NULL, NULL, y->data, c, eps };
    if (weight && !(a.w = td_cpu_vec_f32(be, weight, &ow)))
        rc = TD_ENOMEM;
    if (!rc && bias && !(a.b = td_cpu_vec_f32(be, bias, &ob)))
        rc = TD_ENOMEM;
    if (!rc)
        td_pool_for(td_cpu_pool(be), rows, 4, fn, &a);
    free(ow);
    free(ob);
    return rc;
}

int td_cpu_layernorm(td_backend *be, const td_tensor *x, const td_tensor *weight,
                     const td_tensor *bias, float eps, td_tensor *y)
{
    return run_rows(be, "layernorm", x, weight, bias, eps, y, layernorm_rows);
}

int td_cpu_rmsnorm(td_backend *be, const td_tensor *x, const td_tensor *weight,
                   float eps, td_tensor *y)
{
    return run_rows(be, "rmsnorm", x, weight, NULL, eps, y, rmsnorm_rows);
}

#define CRMS_CHUNK 256   /* positions whose sums are kept at once */

typedef struct {
    const float *x, *g, *b;
    float *y;
    int64_t c, n;
} crms_args;

static void crms_positions(void *arg, int64_t p0, int64_t p1)
{
    const crms_args *a = arg;
    double ss[CRMS_CHUNK];
    float inv[CRMS_CHUNK];
    float sc = (float)sqrt((double)a->c);

    for (int64_t q0 = p0; q0 < p1; q0 += CRMS_CHUNK) {
        int64_t len = p1 - q0 < CRMS_CHUNK ? p1 - q0 : CRMS_CHUNK;
        for (int64_t j = 0; j < len; j++)
            ss[j] = 0;
        for (int64_t ch = 0; ch < a->c; ch++) {
            const float *x = a->x + ch * a->n + q0;
            for (int64_t j = 0; j < len; j++)
                ss[j] += (double)x[j] * x[j];
        }
        for (int64_t j = 0; j < len; j++) {
            double nrm = sqrt(ss[j]);
            inv[j] = (float)(1.0 / (nrm > 1e-12 ? nrm : 1e-12));
        }
        for (int64_t ch = 0; ch < a->c; ch++) {
            const float *x = a->x + ch * a->n + q0;
            float *y = a->y + ch * a->n + q0;
            float g = a->g[ch] * sc, bb = a->b ? a->b[ch] : 0.0f;
            for (int64_t j = 0; j < len; j++)
                y[j] = x[j] * inv[j] * g + bb;
        }
    }
}

int td_cpu_channel_rmsnorm(td_backend *be, const td_tensor *x, const td_tensor *gamma,
                           const td_tensor *bias, td_tensor *y)
{
    static const char op[] = "channel_rmsnorm";
    char s1[96], s2[96];
    float *og = NULL, *ob = NULL;
    crms_args a;
    int64_t c;
    int rc = 0;

    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    if (x->ndim < 1 || y->ndim != x->ndim)
        return td_fail(be->ctx, TD_ESHAPE, "%s: x %s and y %s must be [C, ...] alike", op,
                       td_shape_str(x, s1, sizeof(s1)), td_shape_str(y, s2, sizeof(s2)));
    for (int i = 0; i < x->ndim; i++)
        if (x->shape[i] != y->shape[i])
            return td_fail(be->ctx, TD_ESHAPE, "%s: y %s does not match x %s", op,
                           td_shape_str(y, s2, sizeof(s2)), td_shape_str(x, s1, sizeof(s1)));
    c = x->shape[0];
    if (!gamma)
        return td_fail(be->ctx, TD_EINVAL, "%s: gamma is missing", op);
    TD_TRY(td_check_float_vec(be->ctx, op, "gamma", gamma, c));
    if (bias)
        TD_TRY(td_check_float_vec(be->ctx, op, "bias", bias, c));
    if (c == 0)
        return 0;
    a = (crms_args){ x->data, NULL, NULL, y->data, c, td_numel(x) / c };
    if (!(a.g = td_cpu_vec_f32(be, gamma, &og)))
        rc = TD_ENOMEM;
    if (!rc && bias && !(a.b = td_cpu_vec_f32(be, bias, &ob)))
        rc = TD_ENOMEM;
    if (!rc)
        td_pool_for(td_cpu_pool(be), a.n, 64, crms_positions, &a);
    free(og);
    free(ob);
    return rc;
}
