/*
 * Stride-1 conv3d on AMX tiles at f32 accuracy (the three-part products of
 * amx.h): per tap (dt, dh, dw), y[co, P] += w_tap[co, ci] x_tap[ci, P].
 *
 * The weights are the A operand: split once per call into
 * [tap][Co32][part][Ci32] (zeros past Co and Ci). The input is the B
 * operand: split, zero-padded in time, H and W exactly as the conv reads
 * it, into pair layout [frame][row][part][Ci32 / 2][wpp], one padded input
 * row of every channel in one place; output frames go in order, each input
 * frame packed once into a ring of kt frames (6 bytes of scratch per
 * element of kt padded frames, not of all of them). Output positions go in
 * slots of 16 consecutive positions of one row (the last slot of a row runs
 * past Wo into junk that is never stored); for any tap, a slot's B tile is
 * a plain load from the packed input shifted by the tap, its 16 pair rows
 * wpp apart: no copy per tap, no im2col. A junk position's sums touch no
 * valid position's.
 *
 * Per output frame, each pool part runs its share of the frame's blocks of
 * output rows (fixed by the shape) into its own scratch C[Co32][slots]: for
 * each kernel row (dt, dh) and 32 input channels, every 32 output channels
 * in turn run over every pair of slots, summing the kernel row's kw taps in
 * the tiles before storing (the weights, 18 KB at kw 3, stay in L1; the
 * kw taps of a slot read the same cache lines). 32 channels at a time beat
 * 64 and 128 (the B tiles stay in L1 next to the weights: bench/NOTES.md).
 * Every output sums in an order fixed by the shape, whatever the thread
 * count.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "amx.h"
#include "conv3d_amx.h"
#include "cpu.h"

#ifdef TD_HAVE_AMX

#define CA_GK 32              /* input channels per step: one chunk */
#define CA_CFLOATS (1 << 17)  /* about this many floats of C per part (512 KB, in L2) */

typedef struct {
    const float *x;
    const td_tensor *wt;     /* the weights as given */
    float *y;
    uint16_t *wa;            /* weights, [kvol][cop][3][cip] */
    uint32_t *xb;            /* input pairs, a ring of kt frames [kt][hp][3][cip / 2][wpp] */
    char *cbuf;              /* parts x cbytes: each part's C */
    int64_t ci, t, h, w, co, kt, kh, kw, to, ho, wo;
    int64_t cip, cop, wp, hp, wpp;         /* padded channels, padded input dims, packed row length */
    int64_t nsr, rows, ldc, ntask, parts;  /* 16-position slots per row, output rows per block,
                                              C's row stride, blocks per frame, parts */
    int64_t o, f;            /* the output frame being made; the padded input frame being packed */
    size_t cbytes;
    const td_conv3d_params *p;
    atomic_int failed;
} camx_args;

/* Rows c0..c1 of the A operand: w[Co, Ci, kvol] (any float dtype) split
 * per tap, zeros past Co. */
TD_AMX_TARGET static void pack_weights(void *arg, int64_t c0, int64_t c1)
{
    camx_args *a = arg;
    int64_t kvol = a->kt * a->kh * a->kw, nrow = a->ci * kvol;
    size_t esz = td_dtype_size(a->wt->dtype);
    float *row = malloc(sizeof(float) * (size_t)(nrow + a->ci));

    if (!row) {
        atomic_store(&a->failed, 1);
        return;
    }
    for (int64_t c = c0; c < c1; c++) {
        if (c < a->co)
            td_to_f32(a->wt->dtype, (const unsigned char *)a->wt->data + (size_t)(c * nrow) * esz, row,
                      (size_t)nrow);
        for (int64_t k = 0; k < kvol; k++) {
            uint16_t *d = a->wa + (k * a->cop + c) * 3 * a->cip;
            float *tap = row + nrow;
            if (c >= a->co) {
                memset(d, 0, sizeof(uint16_t) * (size_t)(3 * a->cip));
                continue;
            }
            for (int64_t i = 0; i < a->ci; i++)
                tap[i] = row[i * kvol + k];
            td_amx_split3(tap, 1.0f, a->ci, a->cip, d, a->cip);
        }
    }
    free(row);
}

/* Lanes l of 16 padded columns from u0 that hold input columns (pad_w <= u0 + l < pad_w + W). */
static __mmask16 cols_mask(int64_t u0, int64_t pw, int64_t w)
{
    int64_t lo = pw - u0, hi = pw + w - u0;
    uint32_t m;
    lo = lo < 0 ? 0 : lo > 16 ? 16 : lo;
    hi = hi < 0 ? 0 : hi > 16 ? 16 : hi;
    m = ((1u << hi) - 1) & ~((1u << lo) - 1);
    return (__mmask16)m;
}

/* Rows i0..i1 of padded input frame a->f into its ring slot: every pair
 * of channels, all three parts, zeros where the conv reads padding. */
TD_AMX_TARGET static void pack_input(void *arg, int64_t i0, int64_t i1)
{
    camx_args *a = arg;
    int64_t npair = a->cip / 2, pw = a->p->pad_w;
    for (int64_t i = i0; i < i1; i++) {
        int64_t ti = a->f - a->p->pad_t_front, hi = i - a->p->pad_h;
        uint32_t *row = a->xb + (a->f % a->kt * a->hp + i) * 3 * npair * a->wpp;
        if (ti < 0 || ti >= a->t || hi < 0 || hi >= a->h) {
            memset(row, 0, sizeof(uint32_t) * (size_t)(3 * npair * a->wpp));
            continue;
        }
        for (int64_t j = 0; j < npair; j++) {
            /* channels 2j and 2j + 1, NULL past Ci (zeros) */
            const float *s0 = 2 * j < a->ci ? a->x + ((2 * j * a->t + ti) * a->h + hi) * a->w : NULL;
            const float *s1 = 2 * j + 1 < a->ci ? s0 + a->t * a->h * a->w : NULL;
            for (int64_t u0 = 0; u0 < a->wpp; u0 += 16) {
                __mmask16 m = cols_mask(u0, pw, a->w);
                uint32_t *dst[3];
                for (int p = 0; p < 3; p++)
                    dst[p] = row + (p * npair + j) * a->wpp + u0;
                /* the masked loads touch no padding column's address */
                td_amx_pair16(s0 && m ? s0 + u0 - pw : NULL, s1 && m ? s1 + u0 - pw : NULL, m, dst);
            }
        }
    }
}

/* c[32][32] = or += (acc) the six part products of each chunk of 32
 * channels (amx.h's td_amx_chunk6), for the taps dw = 0..kw-1 of one row
 * of the kernel in turn. a's part p chunk k at tap dw: a + dw atap + p
 * apart + 32 k, rows lda bytes apart; the two column groups' b0 (b1) + dw
 * + p bpart + k bch, pair rows ldb bytes apart. */
TD_AMX_TARGET static void conv_mm32(const uint16_t *a, int64_t lda, int64_t apart, int64_t atap, int64_t kw,
                                    const uint32_t *b0, const uint32_t *b1, int64_t ldb, int64_t bpart,
                                    int64_t bch, int64_t nch, const uint32_t *next, float *c, int64_t ldc,
                                    int acc)
{
    /* the next call's B rows (3 cache lines hold 32 positions and the
     * taps' shifts) into L1 while this one runs: each tile load otherwise
     * waits on L2 */
    for (int p = 0; p < 3; p++)
        for (int r = 0; r < 16; r++) {
            const char *l = (const char *)(next + p * bpart) + r * ldb;
            _mm_prefetch(l, _MM_HINT_T0);
            _mm_prefetch(l + 64, _MM_HINT_T0);
            _mm_prefetch(l + 128, _MM_HINT_T0);
        }
    td_amx_sums_begin(c, ldc, acc);
    for (int64_t dw = 0; dw < kw; dw++)
        for (int64_t k = 0; k < nch; k++) {
            const void *ak[3], *bk0[3], *bk1[3];
            for (int p = 0; p < 3; p++) {
                ak[p] = a + dw * atap + p * apart + 32 * k;
                bk0[p] = b0 + dw + p * bpart + k * bch;
                bk1[p] = b1 + dw + p * bpart + k * bch;
            }
            td_amx_chunk6(ak, lda, bk0, bk1, ldb);
        }
    td_amx_sums_end(c, ldc);
}

/* One block of output rows y0.. (nr of them) of frame o into c: slot s
 * (16 positions from 16 (s % nsr) of row s / nsr) at column 16 s. Slots
 * go in pairs; an odd count's last pair repeats its slot into junk. */
TD_AMX_TARGET static void conv_block(const camx_args *a, int64_t o, int64_t y0, int64_t nr, float *c)
{
    int64_t npair = a->cip / 2, rs = 3 * npair * a->wpp, nslot = nr * a->nsr, tap = 0;
    int64_t lda = 2 * 3 * a->cip, ldb = 4 * a->wpp, bpart = npair * a->wpp, bch = 16 * a->wpp;
    for (int64_t dt = 0; dt < a->kt; dt++)
        for (int64_t dh = 0; dh < a->kh; dh++, tap += a->kw)
            for (int64_t g = 0; g < a->cip; g += CA_GK) {
                int64_t nch = (a->cip - g < CA_GK ? a->cip - g : CA_GK) / 32;
                const uint32_t *bt = a->xb + ((o + dt) % a->kt * a->hp + y0 + dh) * rs + g / 2 * a->wpp;
                const uint16_t *at = a->wa + tap * a->cop * 3 * a->cip + g;
                for (int64_t cb = 0; cb < a->cop; cb += 32)
                    for (int64_t s = 0; s < nslot; s += 2) {
                        int64_t s1 = s + 1 < nslot ? s + 1 : s, s2 = s + 2 < nslot ? s + 2 : 0;
                        const uint32_t *b0 = bt + s / a->nsr * rs + s % a->nsr * 16;
                        const uint32_t *b1 = bt + s1 / a->nsr * rs + s1 % a->nsr * 16;
                        conv_mm32(at + cb * 3 * a->cip, lda, a->cip, a->cop * 3 * a->cip, a->kw, b0, b1, ldb,
                                  bpart, bch, nch, bt + s2 / a->nsr * rs + s2 % a->nsr * 16,
                                  c + cb * a->ldc + 16 * s, 4 * a->ldc, tap || g);
                    }
            }
}

/* Part t of a->parts: blocks [t n / parts, (t + 1) n / parts) of frame a->o. */
TD_AMX_TARGET static void conv_parts(void *arg, int64_t t0, int64_t t1)
{
    camx_args *a = arg;
    td_amx_configure();
    for (int64_t t = t0; t < t1; t++) {
        float *c = (float *)(a->cbuf + (size_t)t * a->cbytes);
        for (int64_t b = t * a->ntask / a->parts; b < (t + 1) * a->ntask / a->parts; b++) {
            int64_t o = a->o, y0 = b * a->rows;
            int64_t nr = a->ho - y0 < a->rows ? a->ho - y0 : a->rows;
            conv_block(a, o, y0, nr, c);
            for (int64_t co = 0; co < a->co; co++)
                for (int64_t r = 0; r < nr; r++)
                    memcpy(a->y + ((co * a->to + o) * a->ho + y0 + r) * a->wo, c + co * a->ldc + r * a->nsr * 16,
                           sizeof(float) * (size_t)a->wo);
        }
    }
    td_amx_release();
}

#define CAMX_ARGS(x_, w_, y_, p_)                                                                   \
    { .x = (x_)->data, .wt = (w_), .y = (y_)->data, .ci = (x_)->shape[0], .t = (x_)->shape[1],          \
      .h = (x_)->shape[2], .w = (x_)->shape[3], .co = (w_)->shape[0], .kt = (w_)->shape[2],             \
      .kh = (w_)->shape[3], .kw = (w_)->shape[4], .to = (y_)->shape[1], .ho = (y_)->shape[2],           \
      .wo = (y_)->shape[3], .p = (p_) }

/* The sizes derived from a's shapes for nthreads threads. The scratch
 * holds the packed weights (the bytes returned), then the ring
 * (*xbytes), then parts x cbytes of C. */
static size_t camx_plan(camx_args *a, int nthreads, size_t *xbytes)
{
    a->cip = td_amx_up32(a->ci);
    a->cop = td_amx_up32(a->co);
    a->wp = a->w + 2 * (int64_t)a->p->pad_w;
    a->hp = a->ho + a->kh - 1;
    a->nsr = (a->wo + 15) / 16;
    /* a packed row holds every slot's reads (16 nsr + kw - 1 columns, from
     * wp on zeros), an odd number of cache lines long so that a tile's 16
     * pair rows spread over L1's sets */
    a->wpp = (16 * a->nsr + a->kw - 1 + 15) / 16 * 16;
    if (a->wpp / 16 % 2 == 0)
        a->wpp += 16;
    /* output rows per block: about CA_CFLOATS of C */
    a->rows = CA_CFLOATS / (a->cop * 16 * a->nsr);
    a->rows = a->rows < 1 ? 1 : a->rows > a->ho ? a->ho : a->rows;
    a->ldc = 32 * ((a->rows * a->nsr + 1) / 2) + 16;
    a->ntask = (a->ho + a->rows - 1) / a->rows;
    a->parts = nthreads < a->ntask ? nthreads : a->ntask;
    a->cbytes = sizeof(float) * (size_t)(a->cop * a->ldc);
    *xbytes = sizeof(uint32_t) * (size_t)(a->kt * a->hp * 3 * (a->cip / 2) * a->wpp);
    return (sizeof(uint16_t) * (size_t)(a->kt * a->kh * a->kw * a->cop * 3 * a->cip) + 63) / 64 * 64;
}

size_t td_cpu_conv3d_amx_bytes(int nthreads, const td_tensor *x, const td_tensor *w, const td_tensor *y,
                               const td_conv3d_params *p)
{
    camx_args a = CAMX_ARGS(x, w, y, p);
    size_t xbytes, wbytes = camx_plan(&a, nthreads, &xbytes);
    return wbytes + xbytes + (size_t)a.parts * a.cbytes;
}

int td_cpu_conv3d_amx(td_backend *be, const td_tensor *x, const td_tensor *w,
                      const td_conv3d_params *p, td_tensor *y)
{
    camx_args a = CAMX_ARGS(x, w, y, p);
    size_t xbytes, wbytes = camx_plan(&a, td_cpu_of(be)->nthreads, &xbytes);
    char *scratch = td_cpu_scratch_bytes(be, wbytes + xbytes + (size_t)a.parts * a.cbytes);

    if (!scratch)
        return be->ctx->err;
    a.wa = (uint16_t *)scratch;
    a.xb = (uint32_t *)(scratch + wbytes);
    a.cbuf = scratch + wbytes + xbytes;
    atomic_init(&a.failed, 0);
    td_pool_for(td_cpu_pool(be), a.cop, 8, pack_weights, &a);
    if (atomic_load(&a.failed))
        return td_fail(be->ctx, TD_ENOMEM, "conv3d: cannot allocate a row of w (%lld floats)",
                       (long long)(a.ci * a.kt * a.kh * a.kw + a.ci));
    /* output frame o reads padded frames o..o+kt-1: each packed once, into
     * the ring slot of the frame o - 1 no longer needs */
    for (a.o = 0; a.o < a.to; a.o++) {
        for (a.f = a.o ? a.o + a.kt - 1 : 0; a.f < a.o + a.kt; a.f++)
            td_pool_for(td_cpu_pool(be), a.hp, 1, pack_input, &a);
        td_pool_for(td_cpu_pool(be), a.parts, 1, conv_parts, &a);
    }
    return 0;
}

#else

size_t td_cpu_conv3d_amx_bytes(int nthreads, const td_tensor *x, const td_tensor *w, const td_tensor *y,
                               const td_conv3d_params *p)
{
    (void)nthreads, (void)x, (void)w, (void)y, (void)p;
    return 0;
}

int td_cpu_conv3d_amx(td_backend *be, const td_tensor *x, const td_tensor *w,
                      const td_conv3d_params *p, td_tensor *y)
{
    (void)x, (void)w, (void)p, (void)y;
    return td_fail(be->ctx, TD_EINVAL, "conv3d: this build has no AMX path");
}

#endif
