/*
 * Linear layers with f32 or bf16 weights on AMX tiles, at f32 accuracy
 * (the three-part products of amx.h; a bf16 weight is its own one part,
 * so three products where f32 takes six): y = x w^T.
 *
 * w is split and packed once per call as the B operand (6 bytes per f32
 * weight, 2 per bf16; splitting it costs about what one pass of sgemm over it does),
 * then each pool part runs its share of the blocks of LIN_BM rows of x
 * (blocks fixed by the shape), all in the backend's scratch. A block splits its rows
 * of x once, then makes y's columns LIN_BN at a time in its own scratch
 * (L2; y's rows, a multiple of 4 KB apart at the DiT's widths, would
 * crowd a few L1 sets): K in chunks of LIN_BK, and per chunk, for each 32
 * columns (whose chunk of w, 24 KB, stays in L1) every 32 rows. Every
 * element of y is summed in an order fixed by the shape, whatever the
 * thread count.
 */
#include <stdlib.h>
#include <string.h>

#include "amx.h"
#include "cpu.h"
#include "linear_amx.h"

#ifdef TD_HAVE_AMX

#define LIN_BM 256
#define LIN_BK 128
#define LIN_BN 512

typedef struct {
    const float *x;
    const void *w;       /* f32, or bf16 (one part: a third of the products) */
    int wbf16;
    float *y;
    int64_t ldx, ldw, ldy, m, n, k, kp, ng;   /* ng: groups of 16 columns */
    uint16_t *wb;        /* w packed */
    char *buf;           /* parts x part_bytes: each part's buffers */
    int64_t parts;
    size_t part_bytes;
} lin_args;

TD_AMX_TARGET static void pack_w(void *arg, int64_t t0, int64_t t1)
{
    lin_args *l = arg;
    for (int64_t t = t0; t < t1; t++)
        if (l->wbf16)
            td_amx_pack_b_rows_bf16(l->w, l->ldw, l->n, 32 * t, 32, l->k, l->kp, LIN_BK, l->ng, l->wb);
        else
            td_amx_pack_b_rows(l->w, l->ldw, l->n, 32 * t, 32, l->k, l->kp, LIN_BK, l->ng, l->wb);
}

/* One part's buffers: x's parts by K chunk, [kc][part][row][LIN_LDXA]
 * (one chunk's rows share a few pages), and y's block of columns, rows
 * LIN_LDC apart (row strides of an odd number of cache lines spread rows
 * over L1's sets). */
#define LIN_LDXA (LIN_BK + 32)
#define LIN_LDC (LIN_BN + 16)

static int64_t lin_xa_elems(const lin_args *l)
{
    return (l->kp + LIN_BK - 1) / LIN_BK * 3 * LIN_BM * LIN_LDXA;
}

/* Part t of l->parts: row blocks [t nb / parts, (t + 1) nb / parts). */
TD_AMX_TARGET static void row_blocks(void *arg, int64_t t0, int64_t t1)
{
    lin_args *l = arg;
    const int64_t ldxa = LIN_LDXA, chunk = 3 * LIN_BM * ldxa, ldc = LIN_LDC;
    const int64_t nb = (l->m + LIN_BM - 1) / LIN_BM;

    td_amx_configure();
    for (int64_t t = t0; t < t1; t++) {
        uint16_t *xa = (uint16_t *)(l->buf + t * l->part_bytes);
        float *cb = (float *)(l->buf + t * l->part_bytes + l->part_bytes - sizeof(float) * (size_t)(LIN_BM * ldc));
        for (int64_t b = t * nb / l->parts; b < (t + 1) * nb / l->parts; b++) {
            int64_t m0 = b * LIN_BM, nr = l->m - m0 < LIN_BM ? l->m - m0 : LIN_BM;
            /* x's rows split into each chunk's parts; rows past nr are zeros */
            for (int64_t i = 0; i < td_amx_up32(nr); i++) {
                const float *xr = l->x + (m0 + (i < nr ? i : 0)) * l->ldx;
                for (int64_t kc = 0; kc < l->kp; kc += LIN_BK) {
                    int64_t n = i < nr && kc < l->k ? (l->k - kc < LIN_BK ? l->k - kc : LIN_BK) : 0;
                    td_amx_split3(xr + (n ? kc : 0), 1.0f, n, l->kp - kc < LIN_BK ? l->kp - kc : LIN_BK,
                                  xa + kc / LIN_BK * chunk + i * ldxa, LIN_BM * ldxa);
                }
            }
            for (int64_t n0 = 0; n0 < l->n; n0 += LIN_BN) {
                int64_t nc = l->n - n0 < LIN_BN ? l->n - n0 : LIN_BN;
                for (int64_t kc = 0; kc < l->kp; kc += LIN_BK) {
                    int64_t kw = l->kp - kc < LIN_BK ? l->kp - kc : LIN_BK;
                    for (int64_t c0 = n0; c0 < n0 + nc; c0 += 32) {
                        const int np = l->wbf16 ? 1 : 3;   /* w's parts */
                        const uint16_t *b0[3], *b1[3];
                        for (int p = 0; p < np; p++) {
                            b0[p] = l->wb + ((kc / LIN_BK * l->ng + c0 / 16) * np + p) * LIN_BK * 16;
                            b1[p] = b0[p] + np * LIN_BK * 16;
                        }
                        for (int64_t i0 = 0; i0 < nr; i0 += 32) {
                            const uint16_t *a[3];
                            for (int p = 0; p < 3; p++)
                                a[p] = xa + kc / LIN_BK * chunk + (p * LIN_BM + i0) * ldxa;
                            if (l->wbf16)
                                td_amx_mm32_w1(a, 2 * ldxa, b0, b1, kw / 32, cb + i0 * ldc + c0 - n0,
                                               4 * ldc, kc > 0);
                            else
                                td_amx_mm32(a, 2 * ldxa, b0, b1, kw / 32, cb + i0 * ldc + c0 - n0,
                                            4 * ldc, kc > 0);
                        }
                    }
                }
                for (int64_t i = 0; i < nr; i++)
                    memcpy(l->y + (m0 + i) * l->ldy + n0, cb + i * ldc, sizeof(float) * (size_t)nc);
            }
        }
    }
    td_amx_release();
}

/* Sets l's parts and part_bytes for nthreads threads; returns the bytes
 * of w packed, which the scratch holds before the parts' buffers. */
static size_t lin_plan(lin_args *l, int nthreads)
{
    const int64_t nb = (l->m + LIN_BM - 1) / LIN_BM;
    l->kp = td_amx_up32(l->k);
    l->ng = td_amx_up32(l->n) / 16;
    l->parts = nthreads < nb ? nthreads : nb;
    l->part_bytes = (sizeof(uint16_t) * (size_t)lin_xa_elems(l) + 63) / 64 * 64 +
                    sizeof(float) * (size_t)(LIN_BM * LIN_LDC);
    return sizeof(uint16_t) * (size_t)((l->wbf16 ? 1 : 3) * td_amx_up32(l->n) *
                                       ((l->kp + LIN_BK - 1) / LIN_BK * LIN_BK));
}

size_t td_cpu_linear_amx_bytes(int nthreads, int64_t m, int64_t n, int64_t k, td_dtype wdt)
{
    lin_args l = { .wbf16 = wdt == TD_BF16, .m = m, .n = n, .k = k };
    size_t wbytes = lin_plan(&l, nthreads);
    return wbytes + (size_t)l.parts * l.part_bytes;
}

int td_cpu_linear_amx(td_backend *be, const float *x, int64_t ldx, const void *w, td_dtype wdt,
                      int64_t ldw, int64_t m, int64_t n, int64_t k, float *y, int64_t ldy)
{
    lin_args l = { .x = x, .w = w, .wbf16 = wdt == TD_BF16, .y = y, .ldx = ldx, .ldw = ldw, .ldy = ldy,
                   .m = m, .n = n, .k = k };
    size_t wbytes = lin_plan(&l, td_cpu_of(be)->nthreads);
    char *scratch = td_cpu_scratch_bytes(be, wbytes + (size_t)l.parts * l.part_bytes);

    if (!scratch)
        return be->ctx->err;
    l.wb = (uint16_t *)scratch;
    l.buf = scratch + wbytes;
    td_pool_for(td_cpu_pool(be), td_amx_up32(n) / 32, 1, pack_w, &l);
    td_pool_for(td_cpu_pool(be), l.parts, 1, row_blocks, &l);
    return 0;
}

#else

size_t td_cpu_linear_amx_bytes(int nthreads, int64_t m, int64_t n, int64_t k, td_dtype wdt)
{
    (void)nthreads, (void)m, (void)n, (void)k, (void)wdt;
    return 0;
}

int td_cpu_linear_amx(td_backend *be, const float *x, int64_t ldx, const void *w, td_dtype wdt,
                      int64_t ldw, int64_t m, int64_t n, int64_t k, float *y, int64_t ldy)
{
    (void)be, (void)x, (void)ldx, (void)w, (void)wdt, (void)ldw, (void)m, (void)n, (void)k, (void)y, (void)ldy;
    return td_fail(be->ctx, TD_EINVAL, "linear: this build has no AMX path");
}

#endif
