/*
 * Scaled-dot-product attention, flash style: per (head, tile of ATT_BQ
 * queries) the keys are visited in tiles of ATT_BK with a running row max
 * and sum, so nothing of size Sq x Sk ever exists (the DiT runs 32760
 * tokens). Each tile's two products (q k^T and p v) are sgemm calls made
 * from the pool workers with OpenBLAS held at one thread (see cpu.h); the
 * pool splits the (head, query tile) pairs.
 *
 * The softmax between the two products is a fifth of the op's time when
 * gcc vectorises it at the baseline ISA (4 lanes, no FMA), so there is an
 * AVX2 version of it; on AVX-512 the whole tile is our own (no sgemm, see
 * att_tile_avx512). Each carries its own target attribute and is chosen at
 * run time by CPUID (td_att_path): the build needs no -march.
 *
 * SLA's sparse part (sla.c) walks the same tiles over its selected key
 * blocks only (td_cpu_att_blocks): on AVX-512 a tile gathers up to
 * ATT_BK keys from several blocks, on the sgemm paths it is one block (on
 * AMX, attention_amx.c walks them one block at a time).
 */
#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "amx.h"
#include "attention_amx.h"
#include "cpu.h"
#include "cpu_math.h"
#include "simd_exp.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define TD_X86 1
#endif

#define ATT_BQ 256
#define ATT_BK 256
/* The AVX-512 path's query tile, and the row stride of its transposed
 * buffers: rows a multiple of 1 KB apart would all fall in 4 of L1's 64
 * sets, an odd number of cache lines spreads them over all. */
#define ATT_BQ512 512
#define ATT_LD (ATT_BQ512 + 16)

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
    case TD_ATT_AMX:
        return __builtin_cpu_supports("avx512f") && td_amx_usable();
    }
    return 0;
#else
    return path == TD_ATT_SCALAR;
#endif
}

td_att_path td_cpu_att_best(td_isa cap)
{
    if (cap >= TD_ISA_AMX && td_cpu_att_supported(TD_ATT_AMX))
        return TD_ATT_AMX;
    if (cap >= TD_ISA_AVX512 && td_cpu_att_supported(TD_ATT_AVX512))
        return TD_ATT_AVX512;
    if (cap >= TD_ISA_AVX2 && td_cpu_att_supported(TD_ATT_AVX2))
        return TD_ATT_AVX2;
    return TD_ATT_SCALAR;
}

static att_rows att_rows_of(td_att_path path)
{
#ifdef TD_X86
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
    int64_t bq, nqt;          /* query tile, tiles per head */
    float scale;
    td_att_path path;
    att_rows rows;
    atomic_int failed;
    /* SLA's sparse walk: only the key blocks sel[0, nsel) of bk keys each,
     * ascending; sel NULL walks every key. */
    const int *sel;
    int64_t nsel, bk;
} att_args;

/* One key tile of a walk: runs of seg keys starting at start[] (only the
 * last may be shorter, where the keys end), n keys in all. */
typedef struct {
    int64_t start[ATT_BK / 64], seg, n;
} att_keys;

/* Tile t of a's walk, tiles of at most `per` keys (a multiple of the
 * block size): contiguous keys, or per / bk selected blocks. 0 past the
 * last tile. Fixed by the shape and the selection alone. */
static int att_keys_of(const att_args *a, int64_t t, int64_t per, att_keys *kt)
{
    if (!a->sel) {
        kt->start[0] = t * per;
        kt->seg = per;
        kt->n = a->sk - kt->start[0] < per ? a->sk - kt->start[0] : per;
        return kt->start[0] < a->sk;
    }
    int64_t g = per / a->bk, b0 = t * g;
    kt->seg = a->bk;
    kt->n = 0;
    for (int64_t i = 0; i < g && b0 + i < a->nsel; i++) {
        kt->start[i] = (int64_t)a->sel[b0 + i] * a->bk;
        kt->n += a->sk - kt->start[i] < a->bk ? a->sk - kt->start[i] : a->bk;
    }
    return b0 < a->nsel;
}

static inline int64_t att_key(const att_keys *kt, int64_t j)
{
    return kt->start[j / kt->seg] + j % kt->seg;
}

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
    att_keys kt;
    /* sgemm reads its operands' rows at one stride: one block per tile */
    for (int64_t t = 0; att_keys_of(a, t, a->sel ? a->bk : ATT_BK, &kt); t++) {
        int64_t k0 = kt.start[0], nk = kt.n;
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

#ifdef TD_X86
/* The AVX-512 tile: no sgemm, so no packing of each tile's operands (a
 * third of the sgemm path's time at the DiT's shape) and the scores are
 * kept transposed, st[key][query], so the softmax runs down 16 queries per
 * vector with no horizontal reductions. Per query tile, q is transposed
 * once into qt[d][query]; then per key tile
 *   st = scale k qt         (8 keys x 32 queries per micro-kernel call)
 *   softmax down st's columns, the running max/sum per query lane
 *   o += st^T v             (8 queries x 32 of dv per call)
 * v's tile is first copied into strips of 32 columns, [strip][key][32]:
 * read in place, its rows 6 KB apart would share two L1 sets.
 * Sums run over d and over keys in ascending order, the same for every
 * thread count. */

/* c[r][0:32] for r < rows (<= 8): alpha * sum_k a_r[k * ak] b[k][0:32]
 * (acc 0) or c + sum (acc 1), a_r = a + r * lda, b's rows ldb apart; lanes
 * outside m0 | m1 << 16 are neither read nor written. Rows past `rows`
 * redo row 0 and are not stored. The accumulators are named: gcc keeps an
 * array of vectors in memory. */
#define MK_DECL(r)                                                                        \
    const float *a##r = a + (rows > (r) ? (r) : 0) * lda;                                 \
    __m512 c##r##0 = acc && rows > (r) ? _mm512_maskz_loadu_ps(m0, c + (r) * ldc)         \
                                       : _mm512_setzero_ps();                             \
    __m512 c##r##1 = acc && rows > (r) ? _mm512_maskz_loadu_ps(m1, c + (r) * ldc + 16)    \
                                       : _mm512_setzero_ps();
#define MK_FMA(r)                                                                         \
    {                                                                                     \
        __m512 x_ = _mm512_set1_ps(a##r[k * ak]);                                         \
        c##r##0 = _mm512_fmadd_ps(x_, b0, c##r##0);                                       \
        c##r##1 = _mm512_fmadd_ps(x_, b1, c##r##1);                                       \
    }
#define MK_STORE(r)                                                                       \
    if (rows > (r)) {                                                                     \
        if (!acc) {                                                                       \
            c##r##0 = _mm512_mul_ps(c##r##0, al);                                         \
            c##r##1 = _mm512_mul_ps(c##r##1, al);                                         \
        }                                                                                 \
        _mm512_mask_storeu_ps(c + (r) * ldc, m0, c##r##0);                                \
        _mm512_mask_storeu_ps(c + (r) * ldc + 16, m1, c##r##1);                           \
    }
#define MK_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

__attribute__((target("avx512f"), always_inline))
static inline void mk8x32(const float *a, int64_t lda, int64_t ak, int rows, const float *b,
                          int64_t ldb, int64_t kn, __mmask16 m0, __mmask16 m1, float *c,
                          int64_t ldc, float alpha, int acc)
{
    const __m512 al = _mm512_set1_ps(alpha);
    MK_ROWS(MK_DECL)
    for (int64_t k = 0; k < kn; k++) {
        __m512 b0 = _mm512_maskz_loadu_ps(m0, b + k * ldb);
        __m512 b1 = _mm512_maskz_loadu_ps(m1, b + k * ldb + 16);
        MK_ROWS(MK_FMA)
    }
    MK_ROWS(MK_STORE)
}

/* The lanes of the first n (clamped to 0..32) of 32 columns, as two masks. */
static inline void mask32(int64_t n, __mmask16 *m0, __mmask16 *m1)
{
    n = n < 0 ? 0 : n > 32 ? 32 : n;
    *m0 = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
    *m1 = (__mmask16)(n >= 32 ? 0xffff : n <= 16 ? 0 : (1u << (n - 16)) - 1);
}

__attribute__((target("avx512f")))
static void att_tile_avx512(const att_args *a, int64_t h, int64_t q0, int64_t nq,
                            float *st, float *qt, float *vp, float *o, float *mx, float *l)
{
    const int64_t d = a->d, dv = a->dv;
    const float *q = a->q + q0 * a->qs + h * d;
    __mmask16 m0, m1;

    for (int64_t i = 0; i < nq; i++) {
        mx[i] = -INFINITY;
        l[i] = 0.0f;
        for (int64_t c = 0; c < d; c++)
            qt[c * ATT_LD + i] = q[i * a->qs + c];
    }
    for (int64_t i = 0; i < nq * dv; i++)
        o[i] = 0.0f;
    att_keys kt;
    const float *kr[ATT_BK + 8], *vr[ATT_BK];
    for (int64_t t = 0; att_keys_of(a, t, ATT_BK, &kt); t++) {
        int64_t k0 = kt.start[0], nk = kt.n;

        /* Rows are contiguous within each run of keys, and runs are a
         * multiple of 8 keys but the last: an 8-key step reads from one. */
        for (int64_t j = 0; j < nk; j++) {
            int64_t key = att_key(&kt, j);
            kr[j] = a->k + key * a->ks + h * d;
            vr[j] = a->v + key * a->vs + h * dv;
        }
        /* kr[j + 8] past the tile is row j again: the last group's
         * prefetch asks for rows it already reads. */
        for (int64_t j = nk; j < nk + 8; j++)
            kr[j] = kr[j - 8 >= 0 ? j - 8 : 0];

        for (int64_t i0 = 0; i0 < nq; i0 += 32) {
            mask32(nq - i0, &m0, &m1);
            for (int64_t j0 = 0; j0 < nk; j0 += 8) {
                /* Each 512-byte row of k is its own short stream, which
                 * the hardware prefetchers barely follow: the first strip
                 * asks for the next 8 rows. (Asking for v's rows there too
                 * cost SLA's gathered tiles 3-5 % and dense attention
                 * nothing: the misses compete with k's.) */
                if (i0 == 0)
                    for (int64_t j = j0; j < j0 + 8 && j < nk; j++) {
                        const char *kn = (const char *)kr[j + 8];
                        for (int64_t b = 0; b < d * 4; b += 64)
                            _mm_prefetch(kn + b, _MM_HINT_T0);
                    }
                mk8x32(kr[j0], a->ks, 1, (int)(nk - j0 < 8 ? nk - j0 : 8), qt + i0, ATT_LD,
                       d, m0, m1, st + j0 * ATT_LD + i0, ATT_LD, a->scale, 0);
            }
        }
        if (a->bias)
            for (int64_t i = 0; i < nq; i++) {
                const float *b = a->bias + (h * a->sq + q0 + i) * a->bias_ld + k0;
                for (int64_t j = 0; j < nk; j++)
                    st[j * ATT_LD + i] += b[j];
            }
        for (int64_t i0 = 0; i0 < nq; i0 += 16) {
            __mmask16 km = (__mmask16)(nq - i0 >= 16 ? 0xffff : (1u << (nq - i0)) - 1), dead;
            __m512 mold = _mm512_maskz_loadu_ps(km, mx + i0), m = mold, sum = _mm512_setzero_ps();
            __m512 corr;
            float cs[16];

            for (int64_t j = 0; j < nk; j++)
                m = _mm512_max_ps(m, _mm512_maskz_loadu_ps(km, st + j * ATT_LD + i0));
            /* Lanes whose keys so far are all masked by the bias: weight 0
             * and nothing to rescale (exp(-inf - -inf) would be NaN). */
            dead = _mm512_cmp_ps_mask(m, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ);
            corr = _mm512_mask_blend_ps(dead, exp512(_mm512_sub_ps(mold, m)), _mm512_set1_ps(1.0f));
            for (int64_t j = 0; j < nk; j++) {
                float *p = st + j * ATT_LD + i0;
                __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(km, p), m));
                e = _mm512_mask_blend_ps(dead, e, _mm512_setzero_ps());
                _mm512_mask_storeu_ps(p, km, e);
                sum = _mm512_add_ps(sum, e);
            }
            _mm512_mask_storeu_ps(l + i0, km,
                                  _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(km, l + i0), corr), sum));
            _mm512_mask_storeu_ps(mx + i0, km, m);
            _mm512_storeu_ps(cs, corr);
            for (int64_t i = i0; i < i0 + 16 && i < nq; i++)
                if (cs[i - i0] != 1.0f)
                    for (int64_t c = 0; c < dv; c++)
                        o[i * dv + c] *= cs[i - i0];
        }
        for (int64_t c0 = 0; c0 < dv; c0 += 32) {
            float *strip = vp + c0 * ATT_BK;
            mask32(dv - c0, &m0, &m1);
            for (int64_t j = 0; j < nk; j++) {
                _mm512_mask_storeu_ps(strip + j * 32, m0, _mm512_maskz_loadu_ps(m0, vr[j] + c0));
                _mm512_mask_storeu_ps(strip + j * 32 + 16, m1,
                                      _mm512_maskz_loadu_ps(m1, vr[j] + c0 + 16));
            }
            for (int64_t i0 = 0; i0 < nq; i0 += 8)
                mk8x32(st + i0, 1, ATT_LD, (int)(nq - i0 < 8 ? nq - i0 : 8), strip, 32, nk, m0, m1,
                       o + i0 * dv + c0, dv, 1.0f, 1);
        }
    }
    for (int64_t i = 0; i < nq; i++) {
        float inv = 1.0f / l[i];
        float *dst = a->out + (q0 + i) * a->os + h * dv;
        for (int64_t j = 0; j < dv; j++)
            dst[j] = o[i * dv + j] * inv;
    }
}
#endif

/* Floats of scratch one tile of up to bq queries needs: scores, o, max,
 * sum; for the AVX-512 path also q transposed and v's strips (scores there
 * ATT_LD floats apart). */
static size_t att_floats(td_att_path path, int64_t bq, int64_t d, int64_t dv)
{
    size_t n = (size_t)(ATT_BQ * ATT_BK + bq * dv + 2 * bq);
    if (path == TD_ATT_AVX512)
        n += (size_t)((ATT_LD - ATT_BQ) * ATT_BK + ATT_LD * d + ATT_BK * ((dv + 31) / 32 * 32));
    return n;
}

/* Rows [q0, q0 + nq) of head h, buf of att_floats(a->path, nq, ...). */
static void att_run(const att_args *a, int64_t h, int64_t q0, int64_t nq, float *buf)
{
    float *s = buf, *o = s + (a->path == TD_ATT_AVX512 ? ATT_LD : ATT_BQ) * ATT_BK;
    float *mx = o + nq * a->dv, *l = mx + nq;
#ifdef TD_X86
    if (a->path == TD_ATT_AVX512) {
        float *qt = l + nq;
        att_tile_avx512(a, h, q0, nq, s, qt, qt + ATT_LD * a->d, o, mx, l);
        return;
    }
#endif
    att_tile(a, h, q0, nq, s, o, mx, l);
}

static void att_tasks(void *arg, int64_t t0, int64_t t1)
{
    att_args *a = arg;
    float *buf = malloc(att_floats(a->path, a->bq, a->d, a->dv) * sizeof(float));
    if (!buf) {
        atomic_store(&a->failed, 1);
        return;
    }
    for (int64_t t = t0; t < t1; t++) {
        int64_t h = t / a->nqt, q0 = (t % a->nqt) * a->bq;
        att_run(a, h, q0, a->sq - q0 < a->bq ? a->sq - q0 : a->bq, buf);
    }
    free(buf);
}

size_t td_cpu_att_blocks_floats(td_att_path path, int64_t nr, int64_t d)
{
    return att_floats(path, nr, d, d);
}

void td_cpu_att_blocks(td_att_path path, const float *q, const float *k, const float *v,
                       int64_t s, int64_t h, int64_t d, float scale, int64_t head, int64_t r0,
                       int64_t nr, const int *sel, int64_t nsel, int64_t bk, float *out,
                       float *buf)
{
    att_args a = { q, k, v, NULL, out, s, s, h, d, d, s, h * d, h * d, h * d, h * d, nr, 1,
                   scale, path, att_rows_of(path), 0, sel, nsel, bk };
    att_run(&a, head, r0, nr, buf);
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

size_t td_cpu_attention_workspace(td_backend *be, const td_tensor *q, const td_tensor *k, const td_tensor *out)
{
    if (td_cpu_of(be)->att_path != TD_ATT_AMX || td_numel(q) == 0 || k->shape[0] == 0)
        return 0;
    return td_cpu_scratch_size(td_cpu_att_amx_bytes(k->shape[0], q->shape[2], out->shape[2]));
}

int td_cpu_attention(td_backend *be, const td_tensor *q, const td_tensor *k,
                     const td_tensor *v, const td_tensor *bias, float scale,
                     int64_t kv_len, td_tensor *out)
{
    char s1[96];
    att_args a;
    int64_t sq, sk, h, bq;

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
    td_cpu_blas_serial();
    if (td_cpu_of(be)->att_path == TD_ATT_AMX) {
        td_att_problem pr = { q->data, k->data, v->data, bias ? bias->data : NULL, out->data,
                              sq, kv_len > 0 ? kv_len : sk, h, q->shape[2], v->shape[2], sk,
                              q->stride[0], k->stride[0], v->stride[0], out->stride[0], scale };
        void *packed = td_cpu_scratch_bytes(be, td_cpu_att_amx_bytes(pr.sk, pr.d, pr.dv));
        if (!packed)
            return be->ctx->err;
        if (td_cpu_att_amx(td_cpu_pool(be), &pr, packed) < 0)
            return td_fail(be->ctx, TD_ENOMEM, "attention: cannot allocate tile buffers");
        return 0;
    }
    bq = td_cpu_of(be)->att_path == TD_ATT_AVX512 ? ATT_BQ512 : ATT_BQ;
    a = (att_args){ q->data, k->data, v->data, bias ? bias->data : NULL, out->data,
                    sq, kv_len > 0 ? kv_len : sk, h, q->shape[2], v->shape[2], sk,
                    q->stride[0], k->stride[0], v->stride[0], out->stride[0],
                    bq, (sq + bq - 1) / bq, scale, td_cpu_of(be)->att_path,
                    att_rows_of(td_cpu_of(be)->att_path), 0, NULL, 0, 0 };
    td_pool_for(td_cpu_pool(be), h * a.nqt, 1, att_tasks, &a);
    if (atomic_load(&a.failed))
        return td_fail(be->ctx, TD_ENOMEM, "attention: cannot allocate tile buffers");
    return 0;
}
