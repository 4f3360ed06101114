/*
 * Scaled-dot-product attention, flash style: per (head, tile of ATT_BQ
 * queries) the keys are visited in tiles of ATT_BK with a running row max
 * and sum, so nothing of size Sq x Sk ever exists (the DiT runs 32760
 * tokens). Each tile's two products (q k^T and p v) are sgemm calls made
 * from the pool workers with OpenBLAS held at one thread (see cpu.h); the
 * pool splits the (head, query tile) pairs.
 *
 * The softmax between the two products is a third of the op's time when
 * gcc vectorises it at the baseline ISA (4 lanes, no FMA), so it has AVX2
 * and AVX-512 versions, each under its own target attribute and chosen at
 * run time by CPUID (td_att_path): the build needs no -march.
 */
#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "cpu.h"
#include "cpu_math.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define TD_X86 1
#endif

#define ATT_BQ 256
#define ATT_BK 256

/* The softmax steps on one row of n scores: max_bias adds the bias row b
 * (when not NULL) and returns the row's max; exp_sum sets x = exp(x - m)
 * and returns the row's sum. */
typedef struct {
    float (*max_bias)(float *x, const float *b, int64_t n);
    float (*exp_sum)(float *x, int64_t n, float m);
} att_rows;

static float max_bias_scalar(float *x, const float *b, int64_t n)
{
    if (b)
        for (int64_t j = 0; j < n; j++)
            x[j] += b[j];
    return td_row_max(x, n);
}

static float exp_sum_scalar(float *x, int64_t n, float m)
{
    td_row_exp_sub(x, n, m);
    return td_row_sum(x, n);
}

#ifdef TD_X86
/* td_expf's algorithm and constants on 16 lanes, with FMA: the same
 * clamps, 0 below -87.3 (so exp(-inf) = 0) and NaN kept (max/min return
 * their second operand, x, when it is NaN). */
#define EXP_BODY(V, F, I, W)                                                          \
    const F lo_ = V##set1_ps(-87.3f), magic_ = V##set1_ps(12582912.0f);               \
    F xc_ = V##min_ps(V##set1_ps(88.7f), V##max_ps(lo_, x));                          \
    F t_ = V##fmadd_ps(xc_, V##set1_ps(1.44269504088896341f), magic_);                \
    F n_ = V##sub_ps(t_, magic_);                                                     \
    F r_ = V##fnmadd_ps(n_, V##set1_ps(0.693359375f), xc_);                           \
    F p_ = V##set1_ps(1.9875691500e-4f);                                              \
    r_ = V##fmadd_ps(n_, V##set1_ps(2.12194440e-4f), r_);                             \
    p_ = V##fmadd_ps(p_, r_, V##set1_ps(1.3981999507e-3f));                           \
    p_ = V##fmadd_ps(p_, r_, V##set1_ps(8.3334519073e-3f));                           \
    p_ = V##fmadd_ps(p_, r_, V##set1_ps(4.1665795894e-2f));                           \
    p_ = V##fmadd_ps(p_, r_, V##set1_ps(1.6666665459e-1f));                           \
    p_ = V##fmadd_ps(p_, r_, V##set1_ps(5.0000001201e-1f));                           \
    p_ = V##add_ps(V##fmadd_ps(p_, V##mul_ps(r_, r_), r_), V##set1_ps(1.0f));         \
    I e_ = V##slli_epi32(V##add_epi32(V##sub_epi32(V##castps_si##W(t_),               \
                                                      V##castps_si##W(magic_)),       \
                                         V##set1_epi32(127)), 23);                    \
    p_ = V##mul_ps(p_, V##castsi##W##_ps(e_))

__attribute__((target("avx512f")))
static inline __m512 exp512(__m512 x)
{
    EXP_BODY(_mm512_, __m512, __m512i, 512);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lo_, _CMP_LT_OQ), p_, _mm512_setzero_ps());
}

__attribute__((target("avx2,fma")))
static inline __m256 exp256(__m256 x)
{
    EXP_BODY(_mm256_, __m256, __m256i, 256);
    return _mm256_andnot_ps(_mm256_cmp_ps(x, lo_, _CMP_LT_OQ), p_);
}

/* Two accumulators of 16, then the ragged end under a lane mask; lanes
 * past n read -inf (max) or are left out of the sum. */
__attribute__((target("avx512f")))
static float max_bias_avx512(float *x, const float *b, int64_t n)
{
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        __m512 x0 = _mm512_loadu_ps(x + j), x1 = _mm512_loadu_ps(x + j + 16);
        if (b) {
            x0 = _mm512_add_ps(x0, _mm512_loadu_ps(b + j));
            x1 = _mm512_add_ps(x1, _mm512_loadu_ps(b + j + 16));
            _mm512_storeu_ps(x + j, x0);
            _mm512_storeu_ps(x + j + 16, x1);
        }
        m0 = _mm512_max_ps(m0, x0);
        m1 = _mm512_max_ps(m1, x1);
    }
    for (; j < n; j += 16) {
        __mmask16 k = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 x0 = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + j);
        if (b) {
            x0 = _mm512_add_ps(x0, _mm512_maskz_loadu_ps(k, b + j));
            _mm512_mask_storeu_ps(x + j, k, x0);
        }
        m0 = _mm512_max_ps(m0, x0);
    }
    return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

__attribute__((target("avx512f")))
static float exp_sum_avx512(float *x, int64_t n, float m)
{
    __m512 mv = _mm512_set1_ps(m), s0 = _mm512_setzero_ps(), s1 = s0;
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        __m512 e0 = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), mv));
        __m512 e1 = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j + 16), mv));
        _mm512_storeu_ps(x + j, e0);
        _mm512_storeu_ps(x + j + 16, e1);
        s0 = _mm512_add_ps(s0, e0);
        s1 = _mm512_add_ps(s1, e1);
    }
    for (; j < n; j += 16) {
        __mmask16 k = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 e0 = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), mv));
        _mm512_mask_storeu_ps(x + j, k, e0);
        s0 = _mm512_mask_add_ps(s0, k, s0, e0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* Horizontal max and sum of 8 lanes, in a fixed order. */
__attribute__((target("avx2")))
static float hmax256(__m256 v)
{
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_shuffle_ps(h, h, 1)));
}

__attribute__((target("avx2")))
static float hsum256(__m256 v)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

/* Two accumulators of 8, the ragged end (< 16) in scalar code. */
__attribute__((target("avx2,fma")))
static float max_bias_avx2(float *x, const float *b, int64_t n)
{
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    float m;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);
        if (b) {
            x0 = _mm256_add_ps(x0, _mm256_loadu_ps(b + j));
            x1 = _mm256_add_ps(x1, _mm256_loadu_ps(b + j + 8));
            _mm256_storeu_ps(x + j, x0);
            _mm256_storeu_ps(x + j + 8, x1);
        }
        m0 = _mm256_max_ps(m0, x0);
        m1 = _mm256_max_ps(m1, x1);
    }
    m = hmax256(_mm256_max_ps(m0, m1));
    for (; j < n; j++) {
        if (b)
            x[j] += b[j];
        m = td_maxf(m, x[j]);
    }
    return m;
}

__attribute__((target("avx2,fma")))
static float exp_sum_avx2(float *x, int64_t n, float m)
{
    __m256 mv = _mm256_set1_ps(m), s0 = _mm256_setzero_ps(), s1 = s0;
    float s;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 e0 = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), mv));
        __m256 e1 = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8), mv));
        _mm256_storeu_ps(x + j, e0);
        _mm256_storeu_ps(x + j + 8, e1);
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
    }
    s = hsum256(_mm256_add_ps(s0, s1));
    for (; j < n; j++) {
        x[j] = td_expf(x[j] - m);
        s += x[j];
    }
    return s;
}
#endif

int td_cpu_att_supported(td_att_path path)
{
#ifdef TD_X86
    __builtin_cpu_init();
    switch (path) {
    case TD_ATT_SCALAR:
        return 1;
    case TD_ATT_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case TD_ATT_AVX512:
        return __builtin_cpu_supports("avx512f");
    }
    return 0;
#else
    return path == TD_ATT_SCALAR;
#endif
}

td_att_path td_cpu_att_best(void)
{
    if (td_cpu_att_supported(TD_ATT_AVX512))
        return TD_ATT_AVX512;
    if (td_cpu_att_supported(TD_ATT_AVX2))
        return TD_ATT_AVX2;
    return TD_ATT_SCALAR;
}

static att_rows att_rows_of(td_att_path path)
{
#ifdef TD_X86
    if (path == TD_ATT_AVX512)
        return (att_rows){ max_bias_avx512, exp_sum_avx512 };
    if (path == TD_ATT_AVX2)
        return (att_rows){ max_bias_avx2, exp_sum_avx2 };
#endif
    (void)path;
    return (att_rows){ max_bias_scalar, exp_sum_scalar };
}

typedef struct {
    const float *q, *k, *v, *bias;
    float *out;
    int64_t sq, sk, h, d, dv;
    int64_t bias_ld;          /* the full Sk: kv_len only shortens the walk */
    int64_t qs, ks, vs, os;   /* row strides (elements between positions) */
    int64_t nqt;              /* query tiles per head */
    float scale;
    att_rows rows;
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
            float *row = s + i * ATT_BK, m, corr, sum;
            const float *b = a->bias ? a->bias + (h * a->sq + q0 + i) * a->bias_ld + k0 : NULL;
            m = td_maxf(mx[i], a->rows.max_bias(row, b, nk));
            if (m == -INFINITY) {
                /* Every key so far masked by the bias: weight 0, and
                 * nothing to rescale (exp(-inf - -inf) would be NaN). */
                for (int64_t j = 0; j < nk; j++)
                    row[j] = 0.0f;
                continue;
            }
            corr = td_expf(mx[i] - m);   /* 0 on the first unmasked tile: mx is -inf */
            sum = a->rows.exp_sum(row, nk, m);
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
                    (sq + ATT_BQ - 1) / ATT_BQ, scale, att_rows_of(td_cpu_of(be)->att_path), 0 };
    td_cpu_blas_serial();
    td_pool_for(td_cpu_pool(be), h * a.nqt, 1, att_tasks, &a);
    if (atomic_load(&a.failed))
        return td_fail(be->ctx, TD_ENOMEM, "attention: cannot allocate tile buffers");
    return 0;
}
