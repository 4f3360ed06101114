/*
 * Scaled-dot-product attention, flash style: per (head, tile of ATT_BQ
 * queries) the keys are visited in tiles of ATT_BK with a running row max
 * and sum, so nothing of size Sq x Sk ever exists (the DiT runs 32760
 * tokens). Each tile's two products (q k^T and p v) are sgemm calls made
 * from the pool workers with OpenBLAS held at one thread (see cpu.h); the
 * pool splits the (head, query tile) pairs.
 */
#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "cpu.h"
#include "cpu_math.h"

#define ATT_BQ 256
#define ATT_BK 256

typedef struct {
    const float *q, *k, *v, *bias;
    float *out;
    int64_t sq, sk, h, d, dv;
    int64_t bias_ld;          /* the full Sk: kv_len only shortens the walk */
    int64_t qs, ks, vs, os;   /* row strides (elements between positions) */
    int64_t nqt;              /* query tiles per head */
    float scale;
    atomic_int failed;
} att_args;

static void att_tile(const att_args *a, int64_t h, int64_t q0, int64_t nq,
                     float *s, float *o, float *mx, float *l)
{
    const float *q = a->q + q0 * a->qs + h * a->d;
    for (int64_t i = 0; i < nq; i++) {
        mx[i] = -INFINITY;
        l[i] = 0.0f;
    }
    for (int64_t i = 0; i < nq * a->dv; i++)
        o[i] = 0.0f;
    for (int64_t k0 = 0; k0 < a->sk; k0 += ATT_BK) {
        int64_t nk = a->sk - k0 < ATT_BK ? a->sk - k0 : ATT_BK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)a->d,
                    a->scale, q, (int)a->qs, a->k + k0 * a->ks + h * a->d, (int)a->ks,
                    0.0f, s, ATT_BK);
        for (int64_t i = 0; i < nq; i++) {
            float *row = s + i * ATT_BK, m = mx[i], corr, sum;
            if (a->bias) {
                const float *b = a->bias + (h * a->sq + q0 + i) * a->bias_ld + k0;
                for (int64_t j = 0; j < nk; j++)
                    row[j] += b[j];
            }
            m = td_maxf(m, td_row_max(row, nk));
            if (m == -INFINITY) {
                /* Every key so far masked by the bias: weight 0, and
                 * nothing to rescale (exp(-inf - -inf) would be NaN). */
                for (int64_t j = 0; j < nk; j++)
                    row[j] = 0.0f;
                continue;
            }
            corr = td_expf(mx[i] - m);   /* 0 on the first unmasked tile: mx is -inf */
            td_row_exp_sub(row, nk, m);
            sum = td_row_sum(row, nk);
            l[i] = l[i] * corr + sum;
            mx[i] = m;
            if (corr != 1.0f)
                for (int64_t j = 0; j < a->dv; j++)
                    o[i * a->dv + j] *= corr;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)a->dv, (int)nk,
                    1.0f, s, ATT_BK, a->v + k0 * a->vs + h * a->dv, (int)a->vs,
                    1.0f, o, (int)a->dv);
    }
    for (int64_t i = 0; i < nq; i++) {
        float inv = 1.0f / l[i];
        float *dst = a->out + (q0 + i) * a->os + h * a->dv;
        for (int64_t j = 0; j < a->dv; j++)
            dst[j] = o[i * a->dv + j] * inv;
    }
}

static void att_tasks(void *arg, int64_t t0, int64_t t1)
{
    att_args *a = arg;
    size_t n = (size_t)(ATT_BQ * ATT_BK + ATT_BQ * a->dv + 2 * ATT_BQ);
    float *buf = malloc(n * sizeof(float));
    if (!buf) {
        atomic_store(&a->failed, 1);
        return;
    }
    for (int64_t t = t0; t < t1; t++) {
        int64_t h = t / a->nqt, q0 = (t % a->nqt) * ATT_BQ;
        int64_t nq = a->sq - q0 < ATT_BQ ? a->sq - q0 : ATT_BQ;
        float *s = buf, *o = s + ATT_BQ * ATT_BK, *mx = o + ATT_BQ * a->dv, *l = mx + ATT_BQ;
        att_tile(a, h, q0, nq, s, o, mx, l);
    }
    free(buf);
}

/* [S, H, D] with unit stride in D and D-stride in H; the S stride is free
 * so q, k, v may be views into a fused qkv projection. */
static int check_shd(td_backend *be, const char *name, const td_tensor *t)
{
    char s[96];
    if (!t || !t->data)
        return td_fail(be->ctx, TD_EINVAL, "attention: %s is missing", name);
    if (t->dtype != TD_F32 || t->ndim != 3 || t->stride[2] != 1 || t->stride[1] != t->shape[2] ||
        t->stride[0] < t->shape[1] * t->shape[2] || t->stride[0] > INT32_MAX)
        return td_fail(be->ctx, TD_EINVAL, "attention: %s %s must be f32 [S, H, D] with rows of H*D",
                       name, td_shape_str(t, s, sizeof(s)));
    return 0;
}

int td_cpu_attention(td_backend *be, const td_tensor *q, const td_tensor *k,
                     const td_tensor *v, const td_tensor *bias, float scale,
                     int64_t kv_len, td_tensor *out)
{
    char s1[96];
    att_args a;
    int64_t sq, sk, h;

    TD_TRY(check_shd(be, "q", q));
    TD_TRY(check_shd(be, "k", k));
    TD_TRY(check_shd(be, "v", v));
    TD_TRY(check_shd(be, "out", out));
    sq = q->shape[0];
    sk = k->shape[0];
    h = q->shape[1];
    if (bias)
        TD_TRY(td_check_act(be, "attention", "bias", bias));
    TD_TRY(td_check_attention(be->ctx, q, k, v, bias, kv_len, out));
    if (sq == 0 || h == 0 || out->shape[2] == 0)
        return 0;
    if (sk == 0)
        return td_fail(be->ctx, TD_ESHAPE, "attention: no keys (k %s)", td_shape_str(k, s1, sizeof(s1)));
    a = (att_args){ q->data, k->data, v->data, bias ? bias->data : NULL, out->data,
                    sq, kv_len > 0 ? kv_len : sk, h, q->shape[2], v->shape[2], sk,
                    q->stride[0], k->stride[0], v->stride[0], out->stride[0],
                    (sq + ATT_BQ - 1) / ATT_BQ, scale, 0 };
    td_cpu_blas_serial();
    td_pool_for(td_cpu_pool(be), h * a.nqt, 1, att_tasks, &a);
    if (atomic_load(&a.failed))
        return td_fail(be->ctx, TD_ENOMEM, "attention: cannot allocate tile buffers");
    return 0;
}
