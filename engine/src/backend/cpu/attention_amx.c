/*
 * Dense attention on AMX tiles, at f32 accuracy (the three-part products
 * of amx.h).
 *
 * Per head, k and v are split and packed once as B operands (k's rows
 * are q k^T's columns; v's rows are p v's K), then the pool runs query
 * tiles of AMX_BQ rows in the flash pattern of attention.c: per key tile
 * of AMX_BK keys, s = q k^T on tiles (q scaled before its split), the
 * running max and sum and p = exp(s - max) on zmm rows, p split the same
 * way, o += p v on tiles. Sums run in an order fixed by the shape: results
 * do not depend on the thread count. SLA's sparse part takes the same
 * packed head and walks each query block's selected key blocks, one block
 * per step.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "amx.h"
#include "attention_amx.h"
#include "cpu.h"
#include "cpu_math.h"
#include "simd_exp.h"

#ifdef TD_HAVE_AMX

#define AMX_BQ 256
#define AMX_BK 256

/* The shape of one head's walk and its packed operands. */
typedef struct {
    const td_att_problem *a;
    int64_t head;
    int64_t dp, dvp;        /* d, dv rounded up to 32 */
    int64_t nkt;            /* key tiles */
    uint16_t *kb, *vb;      /* packed k and v of this head */
    int failed;
} amx_head;

/* k's B operand, part p of the group of 16 keys from key j: a
 * [dp/2][16][2] block; keys past sk are zero. */
static uint16_t *kb_part(const amx_head *w, int64_t j, int p)
{
    return w->kb + (j / 16 * 3 + p) * w->dp * 16;
}

/* v's B operand, part p of the group of 16 columns from c in key tile t
 * of nk keys: a [td_amx_up32(nk)/2][16][2] block. */
static uint16_t *vb_part(const amx_head *w, int64_t t, int64_t nk, int64_t c, int p)
{
    return w->vb + t * 3 * AMX_BK * w->dvp + (c / 16 * 3 + p) * td_amx_up32(nk) * 16;
}

static int64_t tile_keys(const amx_head *w, int64_t t)
{
    int64_t left = w->a->sk - t * AMX_BK;
    return left < AMX_BK ? left : AMX_BK;
}

/* Pack key tiles [t0, t1): k's rows as q k^T's B columns, v's rows two
 * by two as p v's B pair rows. */
TD_AMX_TARGET static void pack_tiles(void *arg, int64_t t0, int64_t t1)
{
    amx_head *w = arg;
    const td_att_problem *a = w->a;
    const int64_t dp = w->dp;
    for (int64_t t = t0; t < t1; t++) {
        int64_t nk = tile_keys(w, t), nkp = td_amx_up32(nk);
        td_amx_pack_b_rows(a->k + w->head * a->d, a->ks, a->sk, t * AMX_BK, nkp, a->d, dp, dp, 0, w->kb);
        /* keys j and j + 1 are pair row j / 2; keys past nk are zeros */
        for (int64_t j = 0; j < nkp; j += 2) {
            const float *v0 = j < nk ? a->v + (t * AMX_BK + j) * a->vs + w->head * a->dv : NULL;
            const float *v1 = j + 1 < nk ? v0 + a->vs : NULL;
            for (int64_t c0 = 0; c0 < w->dvp; c0 += 16) {
                int64_t n = a->dv - c0;
                __mmask16 m = (__mmask16)(n >= 16 ? 0xffff : n > 0 ? (1u << n) - 1 : 0);
                uint32_t *dst[3];
                for (int p = 0; p < 3; p++)
                    dst[p] = (uint32_t *)(vb_part(w, t, nk, c0, p) + j / 2 * 32);
                td_amx_pair16(v0 && m ? v0 + c0 : NULL, v1 && m ? v1 + c0 : NULL, m, dst);
            }
        }
    }
}

/* A query tile's scratch: the three parts of q and of p (A operands,
 * part p at qa + p AMX_BQ ldq), the scores, the output sums, the running
 * max and sum. Row strides are padded off multiples of 1 KB (such rows
 * would share a few L1 sets). */
typedef struct {
    int64_t ldq, lds, ldp, ldo;   /* in elements */
    uint16_t *qa, *pa;
    float *s, *o, *mx, *l;
} amx_tile;

static size_t tile_layout(const amx_head *w, amx_tile *t, char *base)
{
    size_t off = 0, at[6];
    t->ldq = w->dp + 32;
    t->lds = AMX_BK + 16;
    t->ldp = AMX_BK + 32;
    t->ldo = w->dvp + 16;
    at[0] = off, off += sizeof(uint16_t) * (size_t)(3 * AMX_BQ * t->ldq);
    at[1] = off, off += sizeof(uint16_t) * (size_t)(3 * AMX_BQ * t->ldp);
    at[2] = off, off += sizeof(float) * (size_t)(AMX_BQ * t->lds);
    at[3] = off, off += sizeof(float) * (size_t)(AMX_BQ * t->ldo);
    at[4] = off, off += sizeof(float) * AMX_BQ;
    at[5] = off, off += sizeof(float) * AMX_BQ;
    if (base) {
        t->qa = (uint16_t *)(base + at[0]);
        t->pa = (uint16_t *)(base + at[1]);
        t->s = (float *)(base + at[2]);
        t->o = (float *)(base + at[3]);
        t->mx = (float *)(base + at[4]);
        t->l = (float *)(base + at[5]);
    }
    return (off + 63) / 64 * 64;
}

/* p = exp(x - m) over x[0, nk) into row i's parts in pa (zero to nkp);
 * returns p's sum, and in *xmax the row's max. p's parts are taken by
 * truncation: the top 8 bits, the next 8, the rest (at most 8 bits), each
 * exact in bf16, so one rounding conversion packs 32 of them; the products
 * they drop are below 2^-23 of p v. */
TD_AMX_TARGET static float exp_row(amx_tile *t, int64_t i, const float *x, int64_t nk, float m,
                                   float *xmax)
{
    const int64_t nkp = td_amx_up32(nk);
    const __m512i top = _mm512_set1_epi32((int)0xffff0000u);
    const __m512 vmx = _mm512_set1_ps(m);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), vm = _mm512_set1_ps(-INFINITY);

    for (int64_t j = 0; j < nkp; j += 32) {
        __mmask16 k0 = (__mmask16)(nk - j >= 16 ? 0xffff : nk > j ? (1u << (nk - j)) - 1 : 0);
        __mmask16 k1 = (__mmask16)(nk - j >= 32 ? 0xffff : nk > j + 16 ? (1u << (nk - j - 16)) - 1 : 0);
        __m512 x0 = _mm512_maskz_loadu_ps(k0, x + j), x1 = _mm512_maskz_loadu_ps(k1, x + j + 16);
        __m512 e0 = exp512_neg(_mm512_sub_ps(x0, vmx), k0), e1 = exp512_neg(_mm512_sub_ps(x1, vmx), k1);
        vm = _mm512_mask_max_ps(vm, k0, vm, x0);
        vm = _mm512_mask_max_ps(vm, k1, vm, x1);
        s0 = _mm512_add_ps(s0, e0);
        s1 = _mm512_add_ps(s1, e1);
        for (int p = 0; p < 3; p++) {
            __m512 h0 = p < 2 ? _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(e0), top)) : e0;
            __m512 h1 = p < 2 ? _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(e1), top)) : e1;
            _mm512_storeu_si512(t->pa + (p * AMX_BQ + i) * t->ldp + j, (__m512i)_mm512_cvtne2ps_pbh(h1, h0));
            e0 = _mm512_sub_ps(e0, h0);
            e1 = _mm512_sub_ps(e1, h1);
        }
    }
    *xmax = _mm512_reduce_max_ps(vm);
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* Row i of the tile's scores over nk keys: bias, the running max and sum,
 * o's row rescaled, p's parts into pa's rows. The max a row's weights are
 * taken against may lag its true max by up to AMX_LAG (weights up to
 * e^AMX_LAG, far inside f32's range): then one pass computes the weights
 * and the tile's max together, and only a tile that raises the max past
 * that is redone against the new max and rescales o (the first tile, and
 * rarely another). Keys all masked so far (-inf max) weigh 0 and rescale
 * nothing (exp(-inf - -inf) would be NaN). */
#define AMX_LAG 8.0f

TD_AMX_TARGET static void softmax_row(const amx_head *w, amx_tile *t, int64_t i, int64_t q,
                                   int64_t k0, int64_t nk)
{
    const td_att_problem *a = w->a;
    const float *b = a->bias ? a->bias + (w->head * a->sq + q) * a->bias_ld + k0 : NULL;
    float *x = t->s + i * t->lds;
    float m = t->mx[i], xm, sum, corr;

    if (b)
        for (int64_t j = 0; j < nk; j++)
            x[j] += b[j];
    if (m != -INFINITY) {
        sum = exp_row(t, i, x, nk, m, &xm);
        if (!(xm > m + AMX_LAG)) {
            t->l[i] += sum;
            return;
        }
    } else {
        xm = -INFINITY;
        for (int64_t j = 0; j < nk; j++)
            xm = td_maxf(xm, x[j]);
    }
    m = td_maxf(m, xm);
    if (m == -INFINITY) {
        for (int p = 0; p < 3; p++)
            memset(t->pa + (p * AMX_BQ + i) * t->ldp, 0, sizeof(uint16_t) * (size_t)td_amx_up32(nk));
        return;
    }
    sum = exp_row(t, i, x, nk, m, &xm);
    corr = td_expf(t->mx[i] - m);   /* 0 on the first unmasked tile: mx is -inf */
    t->l[i] = t->l[i] * corr + sum;
    t->mx[i] = m;
    if (corr != 1.0f)
        for (int64_t c = 0; c < w->dvp; c++)
            t->o[i * t->ldo + c] *= corr;
}

/* v's B operand for keys from k0 (a multiple of 32 within its tile):
 * the pair rows of k0's tile from k0 on. */
static const uint16_t *v_from(const amx_head *w, int64_t k0, int64_t c, int p)
{
    int64_t t = k0 / AMX_BK;
    return vb_part(w, t, tile_keys(w, t), c, p) + (k0 % AMX_BK) * 16;
}

/* Starts rows [q0, q0 + nq) of the head, nq <= AMX_BQ: q's parts, the
 * running max and sum, o zeroed. */
TD_AMX_TARGET static void rows_begin(const amx_head *w, amx_tile *t, int64_t q0, int64_t nq)
{
    const td_att_problem *a = w->a;
    const int64_t nqp = td_amx_up32(nq), dp = w->dp;

    for (int64_t i = 0; i < nqp; i++) {
        /* q is scaled before its split: the scores come out scaled; rows
         * past nq are zeros */
        td_amx_split3(a->q + (i < nq ? q0 + i : q0) * a->qs + w->head * a->d, a->scale, i < nq ? a->d : 0, dp,
                      t->qa + i * t->ldq, AMX_BQ * t->ldq);
        t->mx[i] = -INFINITY;
        t->l[i] = 0.0f;
        memset(t->o + i * t->ldo, 0, sizeof(float) * (size_t)w->dvp);
    }
    /* p's rows past nq stay zero: their sums are computed and dropped */
    for (int64_t i = nq; i < nqp; i++)
        for (int p = 0; p < 3; p++)
            memset(t->pa + (p * AMX_BQ + i) * t->ldp, 0, sizeof(uint16_t) * (size_t)t->ldp);
}

/* The rows' walk over keys [k0, k0 + nk), nk <= AMX_BK, k0 a multiple of
 * 32 (of AMX_BK unless the keys end within nk): the scores, the softmax
 * step, o += p v. */
TD_AMX_TARGET static void rows_keys(const amx_head *w, amx_tile *t, int64_t q0, int64_t nq, int64_t k0,
                                    int64_t nk)
{
    const int64_t nqp = td_amx_up32(nq), nkp = td_amx_up32(nk), dp = w->dp;

    for (int64_t j0 = 0; j0 < nkp; j0 += 32) {
        const uint16_t *b0[3], *b1[3];
        for (int p = 0; p < 3; p++) {
            b0[p] = kb_part(w, k0 + j0, p);
            b1[p] = kb_part(w, k0 + j0 + 16, p);
        }
        for (int64_t i0 = 0; i0 < nqp; i0 += 32) {
            const uint16_t *qa[3];
            for (int p = 0; p < 3; p++)
                qa[p] = t->qa + (p * AMX_BQ + i0) * t->ldq;
            td_amx_mm32(qa, 2 * t->ldq, b0, b1, dp / 32, t->s + i0 * t->lds + j0, 4 * t->lds, 0);
        }
    }
    for (int64_t i = 0; i < nq; i++)
        softmax_row(w, t, i, q0 + i, k0, nk);
    for (int64_t c0 = 0; c0 < w->dvp; c0 += 32) {
        const uint16_t *b0[3], *b1[3];
        for (int p = 0; p < 3; p++) {
            b0[p] = v_from(w, k0, c0, p);
            b1[p] = v_from(w, k0, c0 + 16, p);
        }
        for (int64_t i0 = 0; i0 < nqp; i0 += 32) {
            const uint16_t *pa[3];
            for (int p = 0; p < 3; p++)
                pa[p] = t->pa + (p * AMX_BQ + i0) * t->ldp;
            td_amx_mm32(pa, 2 * t->ldp, b0, b1, nkp / 32, t->o + i0 * t->ldo + c0, 4 * t->ldo, 1);
        }
    }
}

/* The rows' output, o / l. */
static void rows_end(const amx_head *w, const amx_tile *t, int64_t q0, int64_t nq)
{
    const td_att_problem *a = w->a;
    for (int64_t i = 0; i < nq; i++) {
        float inv = 1.0f / t->l[i];
        float *dst = a->out + (q0 + i) * a->os + w->head * a->dv;
        for (int64_t c = 0; c < a->dv; c++)
            dst[c] = t->o[i * t->ldo + c] * inv;
    }
}

/* Rows [q0, q0 + nq) of the head over every key, nq <= AMX_BQ. */
TD_AMX_TARGET static void query_tile(const amx_head *w, amx_tile *t, int64_t q0, int64_t nq)
{
    rows_begin(w, t, q0, nq);
    for (int64_t kt = 0; kt < w->nkt; kt++)
        rows_keys(w, t, q0, nq, kt * AMX_BK, tile_keys(w, kt));
    rows_end(w, t, q0, nq);
}

TD_AMX_TARGET static void query_tiles(void *arg, int64_t t0, int64_t t1)
{
    amx_head *w = arg;
    amx_tile t;
    char *buf = aligned_alloc(64, tile_layout(w, &t, NULL));
    if (!buf) {
        __atomic_store_n(&w->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    tile_layout(w, &t, buf);
    td_amx_configure();
    for (int64_t i = t0; i < t1; i++) {
        int64_t q0 = i * AMX_BQ;
        query_tile(w, &t, q0, w->a->sq - q0 < AMX_BQ ? w->a->sq - q0 : AMX_BQ);
    }
    td_amx_release();
    free(buf);
}

/* Bytes of k's packed tiles (6 per key and channel of dp, keys rounded
 * up to whole tiles); v's follow, dvp channels. */
static size_t packed_k_bytes(int64_t sk, int64_t dp)
{
    return sizeof(uint16_t) * (size_t)((sk + AMX_BK - 1) / AMX_BK * AMX_BK * 3 * dp);
}

size_t td_cpu_att_amx_bytes(int64_t sk, int64_t d, int64_t dv)
{
    return packed_k_bytes(sk, td_amx_up32(d)) + packed_k_bytes(sk, td_amx_up32(dv));
}

/* Head head of a, its k and v packed in packed. */
static amx_head head_of(const td_att_problem *a, int64_t head, void *packed)
{
    amx_head w = { .a = a, .head = head, .dp = td_amx_up32(a->d), .dvp = td_amx_up32(a->dv) };
    w.nkt = (a->sk + AMX_BK - 1) / AMX_BK;
    w.kb = packed;
    w.vb = (uint16_t *)((char *)packed + packed_k_bytes(a->sk, w.dp));
    return w;
}

int td_cpu_att_amx(td_pool *pool, const td_att_problem *a, void *packed)
{
    for (int64_t h = 0; h < a->h; h++) {
        amx_head w = head_of(a, h, packed);
        td_pool_for(pool, w.nkt, 1, pack_tiles, &w);
        td_pool_for(pool, (a->sq + AMX_BQ - 1) / AMX_BQ, 1, query_tiles, &w);
        if (w.failed)
            return -1;
    }
    return 0;
}

void td_cpu_att_amx_pack(td_pool *pool, const td_att_problem *a, int64_t head, void *packed)
{
    amx_head w = head_of(a, head, packed);
    td_pool_for(pool, w.nkt, 1, pack_tiles, &w);
}

size_t td_cpu_att_amx_tile_bytes(int64_t d, int64_t dv)
{
    amx_head w = { .dp = td_amx_up32(d), .dvp = td_amx_up32(dv) };
    amx_tile t;
    return tile_layout(&w, &t, NULL);
}

TD_AMX_TARGET void td_cpu_att_amx_blocks(const td_att_problem *a, int64_t head, void *packed, int64_t r0,
                                         int64_t nr, const int *sel, int64_t nsel, int64_t bk, void *buf)
{
    amx_head w = head_of(a, head, packed);
    amx_tile t;

    tile_layout(&w, &t, buf);
    td_amx_configure();
    rows_begin(&w, &t, r0, nr);
    for (int64_t i = 0; i < nsel; i++) {
        int64_t k0 = (int64_t)sel[i] * bk;
        rows_keys(&w, &t, r0, nr, k0, a->sk - k0 < bk ? a->sk - k0 : bk);
    }
    rows_end(&w, &t, r0, nr);
    td_amx_release();
}

#else

int td_amx_usable(void)
{
    return 0;
}

size_t td_cpu_att_amx_bytes(int64_t sk, int64_t d, int64_t dv)
{
    (void)sk, (void)d, (void)dv;
    return 0;
}

int td_cpu_att_amx(td_pool *pool, const td_att_problem *a, void *packed)
{
    (void)pool;
    (void)a;
    (void)packed;
    return -1;
}

void td_cpu_att_amx_pack(td_pool *pool, const td_att_problem *a, int64_t head, void *packed)
{
    (void)pool, (void)a, (void)head, (void)packed;
}

size_t td_cpu_att_amx_tile_bytes(int64_t d, int64_t dv)
{
    (void)d, (void)dv;
    return 0;
}

void td_cpu_att_amx_blocks(const td_att_problem *a, int64_t head, void *packed, int64_t r0, int64_t nr,
                           const int *sel, int64_t nsel, int64_t bk, void *buf)
{
    (void)a, (void)head, (void)packed, (void)r0, (void)nr, (void)sel, (void)nsel, (void)bk, (void)buf;
}

#endif
