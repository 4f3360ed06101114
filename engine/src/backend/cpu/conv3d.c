/*
 * 3-D convolution. Stride 1 in every dim (every conv of the VAE decoder)
 * runs as an implicit GEMM, or on AVX-512 CPUs with Co >= 16 as a direct
 * channel-blocked kernel (further down), or on AMX CPUs with Ci and Co >=
 * TD_CONV_AMX_MIN_CH on AMX tiles (conv3d_amx.c); the rest as im2col +
 * sgemm.
 *
 * Implicit GEMM: each pool task owns a tile of whole output rows of one
 * frame. It copies the input rows the tile reads, zero-padded, into a
 * window [Ci][kt][rows][Wp] (Wp = W + 2 pad_w), and computes the tile at
 * Wp positions per row: then, for a tap (dt, dh, dw), the input each output
 * position reads is the window shifted by dh * Wp + dw, a plain [Ci, P]
 * matrix, and the tile is kt*kh*kw single-threaded sgemm calls
 * y[Co, P] += w_tap[Co, Ci] win_tap[Ci, P] accumulated in tap order. The
 * last kw - 1 positions of each row are junk (they wrap into the next row)
 * and are not copied out. No column matrix: the input is read once per tile
 * from the window, which stays in cache, instead of 27 times from memory.
 * Tiles are fixed by the shape, so the sums do not depend on the thread
 * count (cpu.h).
 *
 * im2col + sgemm (strided convs). y[Co, P] = w[Co, Kc] col[Kc, P]
 * with Kc = Ci*kt*kh*kw and P = To*Ho*Wo. A full im2col of a VAE layer
 * (Kc = 384*27 at 832x480) would be tens of GB, so the output is walked in
 * tiles of whole output rows inside one frame (about CONV_PT positions) and
 * Kc in chunks of whole input channels (about CONV_KT rows): the column
 * buffer never exceeds CONV_KT x CONV_PT floats plus one output row. The
 * matching [Co, chunk] slice of w is widened next to it when the weight is
 * not f32. The pool builds the columns; td_cpu_sgemm (fixed tiles on the
 * pool) accumulates each chunk into y.
 */
#include <cblas.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "amx.h"
#include "conv3d_amx.h"
#include "cpu.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define TD_X86 1
#endif

#define CONV_PT 4096
#define CONV_KT 1152
#define ICONV_NP 2048          /* output positions (padded width) per tile */
#define ICONV_WIN (1 << 20)    /* floats of input window per tile */

typedef struct {
    const float *x, *wr;            /* input; weights by tap (see weights_by_tap) */
    float *y;
    int64_t ci, t, h, w, co, kt, kh, kw;
    int64_t to, ho, wo, wp, rows;   /* output dims, padded width, rows per tile */
    const td_conv3d_params *p;
    atomic_int failed;
} iconv_args;

/* The zero-padded input rows of the tile at output rows y0.. of frame o. */
static void iconv_window(const iconv_args *a, int64_t o, int64_t y0, float *win)
{
    int64_t rin = a->rows + a->kh - 1, pw = a->p->pad_w;
    for (int64_t c = 0; c < a->ci; c++)
        for (int64_t dt = 0; dt < a->kt; dt++) {
            int64_t ti = o - a->p->pad_t_front + dt;
            float *d = win + (c * a->kt + dt) * rin * a->wp;
            for (int64_t r = 0; r < rin; r++, d += a->wp) {   /* past nr + kh - 1: junk reads only */
                int64_t hi = y0 - a->p->pad_h + r;
                if (ti < 0 || ti >= a->t || hi < 0 || hi >= a->h) {
                    memset(d, 0, sizeof(float) * (size_t)a->wp);
                    continue;
                }
                memset(d, 0, sizeof(float) * (size_t)pw);
                memcpy(d + pw, a->x + ((c * a->t + ti) * a->h + hi) * a->w, sizeof(float) * (size_t)a->w);
                memset(d + pw + a->w, 0, sizeof(float) * (size_t)(a->wp - pw - a->w));
            }
        }
}

/* Tile [Co, n] at yt (row stride ldy) from the window: sgemm per tap. */
static void tile_sgemm(const iconv_args *a, const float *win, int64_t n, float *yt, int64_t ldy)
{
    int64_t rin = a->rows + a->kh - 1, ldb = a->kt * rin * a->wp, tap = 0;
    for (int64_t dt = 0; dt < a->kt; dt++)
        for (int64_t dh = 0; dh < a->kh; dh++)
            for (int64_t dw = 0; dw < a->kw; dw++, tap++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)a->co, (int)n, (int)a->ci,
                            1.0f, a->wr + tap * a->co * a->ci, (int)a->ci,
                            win + dt * rin * a->wp + dh * a->wp + dw, (int)ldb,
                            tap ? 1.0f : 0.0f, yt, (int)ldy);
}

static void iconv_tiles(void *arg, int64_t t0, int64_t t1)
{
    iconv_args *a = arg;
    int64_t rin = a->rows + a->kh - 1, ldb = a->kt * rin * a->wp, np = a->rows * a->wp;
    int64_t per_frame = (a->ho + a->rows - 1) / a->rows, nwin = a->ci * ldb;
    int64_t slack = a->kw;
    float *win = malloc(sizeof(float) * (size_t)(nwin + slack + a->co * np)), *yt;

    if (!win) {
        atomic_store(&a->failed, 1);
        return;
    }
    yt = win + nwin + slack;
    /* the last tap's view runs kw - 1 floats past the window, into junk positions */
    memset(win + nwin, 0, sizeof(float) * (size_t)slack);
    for (int64_t t = t0; t < t1; t++) {
        int64_t o = t / per_frame, y0 = (t % per_frame) * a->rows;
        int64_t nr = a->ho - y0 < a->rows ? a->ho - y0 : a->rows, n = nr * a->wp;
        iconv_window(a, o, y0, win);
        tile_sgemm(a, win, n, yt, n);
        for (int64_t c = 0; c < a->co; c++)
            for (int64_t r = 0; r < nr; r++)
                memcpy(a->y + ((c * a->to + o) * a->ho + y0 + r) * a->wo, yt + c * n + r * a->wp,
                       sizeof(float) * (size_t)a->wo);
    }
    free(win);
}

typedef struct {
    const td_tensor *w;
    float *wr;
    int64_t ci, kvol;
    atomic_int failed;
} wtap_args;

/* w[Co, Ci, kvol] (any float dtype) -> wr[kvol][Co][Ci] f32, by rows of Co. */
static void weights_by_tap(void *arg, int64_t c0, int64_t c1)
{
    wtap_args *a = arg;
    int64_t co = a->w->shape[0], nrow = a->ci * a->kvol;
    size_t esz = td_dtype_size(a->w->dtype);
    float *row = malloc(sizeof(float) * (size_t)nrow);

    if (!row) {
        atomic_store(&a->failed, 1);
        return;
    }
    for (int64_t c = c0; c < c1; c++) {
        td_to_f32(a->w->dtype, (const unsigned char *)a->w->data + (size_t)(c * nrow) * esz, row, (size_t)nrow);
        for (int64_t i = 0; i < a->ci; i++)
            for (int64_t k = 0; k < a->kvol; k++)
                a->wr[(k * co + c) * a->ci + i] = row[i * a->kvol + k];
    }
    free(row);
}

/* The scratch of conv_implicit: the weights by tap. */
static size_t implicit_floats(int64_t ci, int64_t co, int64_t kvol)
{
    return (size_t)(kvol * co * ci);
}

/* The stride-1 conv (see the top of the file); y without bias. */
static int conv_implicit(td_backend *be, const td_tensor *x, const td_tensor *w,
                         const td_conv3d_params *p, td_tensor *y)
{
    iconv_args a = { .x = x->data, .y = y->data, .ci = x->shape[0], .t = x->shape[1],
                     .h = x->shape[2], .w = x->shape[3], .co = w->shape[0], .kt = w->shape[2],
                     .kh = w->shape[3], .kw = w->shape[4], .to = y->shape[1], .ho = y->shape[2],
                     .wo = y->shape[3], .p = p };
    int64_t kvol = a.kt * a.kh * a.kw, budget;
    wtap_args wa = { .w = w, .ci = a.ci, .kvol = kvol };

    a.wp = a.w + 2 * (int64_t)p->pad_w;
    /* rows per tile: about ICONV_NP positions, the window within ICONV_WIN */
    a.rows = ICONV_NP / a.wp;
    budget = ICONV_WIN / (a.ci * a.kt * a.wp) - (a.kh - 1);
    a.rows = a.rows < budget ? a.rows : budget;
    a.rows = a.rows < 1 ? 1 : a.rows > a.ho ? a.ho : a.rows;
    if (a.co * a.rows * a.wp > INT32_MAX || a.ci * a.kt * (a.rows + a.kh - 1) * a.wp > INT32_MAX)
        return td_fail(be->ctx, TD_EINVAL, "conv3d: a row of x is past sgemm's 32-bit sizes");
    wa.wr = td_cpu_scratch(be, implicit_floats(a.ci, a.co, kvol));
    if (!wa.wr)
        return TD_ENOMEM;
    a.wr = wa.wr;
    atomic_init(&a.failed, 0);
    atomic_init(&wa.failed, 0);
    td_pool_for(td_cpu_pool(be), a.co, 8, weights_by_tap, &wa);
    td_cpu_blas_serial();
    if (!atomic_load(&wa.failed))
        td_pool_for(td_cpu_pool(be), a.to * ((a.ho + a.rows - 1) / a.rows), 1, iconv_tiles, &a);
    if (atomic_load(&a.failed) || atomic_load(&wa.failed))
        return td_fail(be->ctx, TD_ENOMEM, "conv3d: cannot allocate tile buffers");
    return 0;
}

/*
 * Direct convolution on channel-blocked copies (TD_CONV_AVX512). The
 * per-tap sgemm reads its B operand [Ci, P] with rows a whole window apart
 * and OpenBLAS packs it again for every tap; here nothing is packed per
 * tap. Each pool task owns a tile of whole output rows of one frame (as in
 * the implicit GEMM) and copies the input rows it reads into a window
 * [Ci/16][kt][rows][Wb][16] (zero padding and zero channels past Ci), so
 * the 16 channels of one input position share a cache line. The weights
 * are widened once per call into [Co/32][kt][kh][kw][Ci16][32] (zeros past
 * Co and Ci). A micro-tile is 32 output channels x BCONV_NW positions of
 * one row in 28 zmm accumulators: for each tap and input channel, two
 * weight vectors and BCONV_NW broadcast inputs. Each output sums its terms
 * in tap order, then channel order, whatever the thread count. The window
 * is BCONV_NW-tile wide, so the last tile of a row computes junk positions
 * past Wo that are not stored.
 */
#ifdef TD_X86
#define BCONV_NW 14
#define BCONV_CO 32
#define BCONV_ROWS 4
#define BCONV_KB 8      /* channel blocks per weight chunk: 16 KB of weights */

typedef struct {
    const float *x, *wb;                /* input; blocked weights */
    float *y;
    int64_t ci, t, h, w, co, kt, kh, kw;
    int64_t to, ho, wo, rows;           /* output dims, rows per tile */
    int64_t ncb, wb_w, nxt, ncp;        /* channel blocks, window width, W tiles, co pairs */
    const td_conv3d_params *p;
    atomic_int failed;
} bconv_args;

static void bconv_window(const bconv_args *a, int64_t o, int64_t y0, float *win)
{
    int64_t rin = a->rows + a->kh - 1, pw = a->p->pad_w, ld = a->wb_w * 16;
    for (int64_t cb = 0; cb < a->ncb; cb++) {
        int64_t nc = a->ci - cb * 16 < 16 ? a->ci - cb * 16 : 16;
        for (int64_t dt = 0; dt < a->kt; dt++) {
            int64_t ti = o - a->p->pad_t_front + dt;
            for (int64_t r = 0; r < rin; r++) {
                int64_t hi = y0 - a->p->pad_h + r;
                float *d = win + ((cb * a->kt + dt) * rin + r) * ld;
                if (nc < 16 || ti < 0 || ti >= a->t || hi < 0 || hi >= a->h)
                    memset(d, 0, sizeof(float) * (size_t)ld);
                if (ti < 0 || ti >= a->t || hi < 0 || hi >= a->h)
                    continue;
                memset(d, 0, sizeof(float) * (size_t)(pw * 16));
                memset(d + (pw + a->w) * 16, 0, sizeof(float) * (size_t)((a->wb_w - pw - a->w) * 16));
                for (int64_t c = 0; c < nc; c++) {
                    const float *s = a->x + (((cb * 16 + c) * a->t + ti) * a->h + hi) * a->w;
                    float *dc = d + pw * 16 + c;
                    for (int64_t u = 0; u < a->w; u++)
                        dc[u * 16] = s[u];
                }
            }
        }
    }
}

/* Named accumulators, not an array: gcc keeps an array of vectors in
 * memory (w8a8_vnni.c). */
#define BC_ACC(j)                                                                \
    __m512 s##j##0 = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + (j) * BCONV_CO),        \
           s##j##1 = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + (j) * BCONV_CO + 16)
#define BC_FMA(j)                                                                \
    do {                                                                         \
        __m512 b_ = _mm512_set1_ps(p[(j) * 16]);                                 \
        s##j##0 = _mm512_fmadd_ps(b_, w0, s##j##0);                              \
        s##j##1 = _mm512_fmadd_ps(b_, w1, s##j##1);                              \
    } while (0)
#define BC_OUT(j)                                                                \
    do {                                                                         \
        _mm512_storeu_ps(acc + (j) * BCONV_CO, s##j##0);                         \
        _mm512_storeu_ps(acc + (j) * BCONV_CO + 16, s##j##1);                    \
    } while (0)
#define BC_ALL(M) M(0); M(1); M(2); M(3); M(4); M(5); M(6); M(7); M(8); M(9); M(10); M(11); M(12); M(13)

/* acc[BCONV_NW][32] (zeros first when first) += one tap of channel blocks
 * [0, nb) of the micro-tile: input ip (block stride bs), weights wq. */
__attribute__((target("avx512f")))
static void bconv_tile_avx512(const float *ip, int64_t bs, int64_t nb, const float *wq, float *acc, int first)
{
    BC_ALL(BC_ACC);
    for (int64_t cb = 0; cb < nb; cb++) {
        const float *p = ip + cb * bs;
        for (int c = 0; c < 16; c++, p++, wq += BCONV_CO) {
            __m512 w0 = _mm512_loadu_ps(wq), w1 = _mm512_loadu_ps(wq + 16);
            BC_ALL(BC_FMA);
        }
    }
    BC_ALL(BC_OUT);
}

/* One task's tiles. For each 32 output channels, the taps and chunks of
 * BCONV_KB channel blocks run over every micro-tile of the task in turn,
 * the sums kept in acc between them: the chunk's weights (16 KB) stay in
 * L1 while the window streams, where a micro-tile taking every tap at once
 * reads all Ci x 27 x 32 weights (1.3 MB at Ci 384) per 14 positions. */
static void bconv_tiles(void *arg, int64_t t0, int64_t t1)
{
    bconv_args *a = arg;
    int64_t rin = a->rows + a->kh - 1, ld = a->wb_w * 16, per_frame = (a->ho + a->rows - 1) / a->rows;
    int64_t kvol = a->kt * a->kh * a->kw, ci16 = a->ncb * 16, cpsz = kvol * ci16 * BCONV_CO;
    int64_t nwin = a->ncb * a->kt * rin * ld, tsz = BCONV_NW * BCONV_CO;
    float *win = malloc(sizeof(float) * (size_t)(nwin + a->rows * a->nxt * tsz)), *acc;

    if (!win) {
        atomic_store(&a->failed, 1);
        return;
    }
    acc = win + nwin;
    for (int64_t t = t0; t < t1; t++) {
        int64_t o = t / per_frame, y0 = (t % per_frame) * a->rows;
        int64_t nr = a->ho - y0 < a->rows ? a->ho - y0 : a->rows;
        bconv_window(a, o, y0, win);
        for (int64_t cp = 0; cp < a->ncp; cp++) {
            int64_t nco = a->co - cp * BCONV_CO < BCONV_CO ? a->co - cp * BCONV_CO : BCONV_CO;
            for (int64_t k = 0; k < kvol; k++) {
                int64_t dt = k / (a->kh * a->kw), dh = k / a->kw % a->kh, dw = k % a->kw;
                for (int64_t cb = 0; cb < a->ncb; cb += BCONV_KB) {
                    int64_t nb = a->ncb - cb < BCONV_KB ? a->ncb - cb : BCONV_KB;
                    const float *wq = a->wb + cp * cpsz + (k * ci16 + cb * 16) * BCONV_CO;
                    const float *ip = win + ((cb * a->kt + dt) * rin + dh) * ld + dw * 16;
                    for (int64_t r = 0; r < nr; r++)
                        for (int64_t xt = 0; xt < a->nxt; xt++)
                            bconv_tile_avx512(ip + r * ld + xt * BCONV_NW * 16, a->kt * rin * ld, nb, wq,
                                              acc + (r * a->nxt + xt) * tsz, !k && !cb);
                }
            }
            for (int64_t r = 0; r < nr; r++)
                for (int64_t xt = 0; xt < a->nxt; xt++) {
                    int64_t x0 = xt * BCONV_NW, nw = a->wo - x0 < BCONV_NW ? a->wo - x0 : BCONV_NW;
                    const float *at = acc + (r * a->nxt + xt) * tsz;
                    for (int64_t c = 0; c < nco; c++) {
                        float *yr = a->y + (((cp * BCONV_CO + c) * a->to + o) * a->ho + y0 + r) * a->wo + x0;
                        for (int64_t j = 0; j < nw; j++)
                            yr[j] = at[j * BCONV_CO + c];
                    }
                }
        }
    }
    free(win);
}

typedef struct {
    const td_tensor *w;
    float *wb;
    int64_t ci, co, kvol, ci16;
    atomic_int failed;
} bweights_args;

/* w[Co, Ci, kvol] (any float dtype) -> wb[Co/32][kvol][Ci16][32] f32, by co pairs. */
static void bconv_weights(void *arg, int64_t p0, int64_t p1)
{
    bweights_args *a = arg;
    int64_t nrow = a->ci * a->kvol, cpsz = a->kvol * a->ci16 * BCONV_CO;
    size_t esz = td_dtype_size(a->w->dtype);
    float *row = malloc(sizeof(float) * (size_t)nrow);

    if (!row) {
        atomic_store(&a->failed, 1);
        return;
    }
    for (int64_t cp = p0; cp < p1; cp++) {
        float *d = a->wb + cp * cpsz;
        memset(d, 0, sizeof(float) * (size_t)cpsz);
        for (int64_t c = 0; c < BCONV_CO && cp * BCONV_CO + c < a->co; c++) {
            td_to_f32(a->w->dtype, (const unsigned char *)a->w->data + (size_t)((cp * BCONV_CO + c) * nrow) * esz,
                      row, (size_t)nrow);
            for (int64_t i = 0; i < a->ci; i++)
                for (int64_t k = 0; k < a->kvol; k++)
                    d[(k * a->ci16 + i) * BCONV_CO + c] = row[i * a->kvol + k];
        }
    }
    free(row);
}

/* The scratch of conv_blocked: the weights, channel-blocked. */
static size_t blocked_floats(int64_t ci, int64_t co, int64_t kvol)
{
    return (size_t)((co + BCONV_CO - 1) / BCONV_CO * kvol * ((ci + 15) / 16 * 16) * BCONV_CO);
}

/* The stride-1 conv on the AVX-512 path; y without bias. */
static int conv_blocked(td_backend *be, const td_tensor *x, const td_tensor *w,
                        const td_conv3d_params *p, td_tensor *y)
{
    bconv_args a = { .x = x->data, .y = y->data, .ci = x->shape[0], .t = x->shape[1],
                     .h = x->shape[2], .w = x->shape[3], .co = w->shape[0], .kt = w->shape[2],
                     .kh = w->shape[3], .kw = w->shape[4], .to = y->shape[1], .ho = y->shape[2],
                     .wo = y->shape[3], .p = p };
    bweights_args wa = { .w = w, .ci = a.ci, .co = a.co, .kvol = a.kt * a.kh * a.kw };

    a.ncb = (a.ci + 15) / 16;
    a.ncp = (a.co + BCONV_CO - 1) / BCONV_CO;
    a.nxt = (a.wo + BCONV_NW - 1) / BCONV_NW;
    a.wb_w = a.nxt * BCONV_NW + a.kw - 1;
    /* rows per tile: up to BCONV_ROWS, the window within ICONV_WIN */
    a.rows = ICONV_WIN / (a.ncb * 16 * a.kt * a.wb_w) - (a.kh - 1);
    a.rows = a.rows < 1 ? 1 : a.rows > BCONV_ROWS ? BCONV_ROWS : a.rows;
    a.rows = a.rows > a.ho ? a.ho : a.rows;
    wa.ci16 = a.ncb * 16;
    wa.wb = td_cpu_scratch(be, blocked_floats(a.ci, a.co, wa.kvol));
    if (!wa.wb)
        return TD_ENOMEM;
    a.wb = wa.wb;
    atomic_init(&a.failed, 0);
    atomic_init(&wa.failed, 0);
    td_pool_for(td_cpu_pool(be), a.ncp, 1, bconv_weights, &wa);
    if (!atomic_load(&wa.failed))
        td_pool_for(td_cpu_pool(be), a.to * ((a.ho + a.rows - 1) / a.rows), 1, bconv_tiles, &a);
    if (atomic_load(&a.failed) || atomic_load(&wa.failed))
        return td_fail(be->ctx, TD_ENOMEM, "conv3d: cannot allocate tile buffers");
    return 0;
}
#endif

int td_cpu_conv_supported(td_conv_path path)
{
#ifdef TD_X86
    __builtin_cpu_init();
    return path == TD_CONV_GEMM || (path == TD_CONV_AVX512 && __builtin_cpu_supports("avx512f")) ||
           (path == TD_CONV_AMX && td_amx_usable());
#else
    return path == TD_CONV_GEMM;
#endif
}

td_conv_path td_cpu_conv_best(td_isa cap)
{
    return cap >= TD_ISA_AMX && td_cpu_conv_supported(TD_CONV_AMX)         ? TD_CONV_AMX
           : cap >= TD_ISA_AVX512 && td_cpu_conv_supported(TD_CONV_AVX512) ? TD_CONV_AVX512
                                                                           : TD_CONV_GEMM;
}

typedef struct {
    const float *x;
    float *col;
    int64_t t, h, w;                /* input dims */
    int64_t kt, kh, kw;
    int64_t ho, wo;                 /* output dims */
    const td_conv3d_params *p;
    int64_t r0;                     /* first col row (ci*kvol + tap) of the chunk */
    int64_t to, ho0, nrows, npos;   /* the output tile */
} col_args;

static void build_cols(void *arg, int64_t i0, int64_t i1)
{
    const col_args *a = arg;
    int64_t kvol = a->kt * a->kh * a->kw;
    for (int64_t i = i0; i < i1; i++) {
        int64_t r = a->r0 + i, ci = r / kvol, tap = r % kvol;
        int64_t dt = tap / (a->kh * a->kw), dh = (tap / a->kw) % a->kh, dw = tap % a->kw;
        int64_t ti = a->to * a->p->stride[0] - a->p->pad_t_front + dt;
        float *dst = a->col + i * a->npos;
        if (ti < 0 || ti >= a->t) {
            memset(dst, 0, (size_t)a->npos * sizeof(float));
            continue;
        }
        for (int64_t oy = 0; oy < a->nrows; oy++) {
            int64_t hi = (a->ho0 + oy) * a->p->stride[1] - a->p->pad_h + dh;
            float *d = dst + oy * a->wo;
            const float *src;
            if (hi < 0 || hi >= a->h) {
                memset(d, 0, (size_t)a->wo * sizeof(float));
                continue;
            }
            src = a->x + ((ci * a->t + ti) * a->h + hi) * a->w;
            for (int64_t ox = 0; ox < a->wo; ox++) {
                int64_t wi = ox * a->p->stride[2] - a->p->pad_w + dw;
                d[ox] = wi >= 0 && wi < a->w ? src[wi] : 0.0f;
            }
        }
    }
}

typedef struct {
    float *y;
    const float *b;
    int64_t p;
} cbias_args;

static void conv_bias(void *arg, int64_t c0, int64_t c1)
{
    const cbias_args *a = arg;
    for (int64_t c = c0; c < c1; c++)
        for (int64_t i = 0; i < a->p; i++)
            a->y[c * a->p + i] += a->b[c];
}

static int64_t out_dim(int64_t in, int64_t pad, int64_t k, int64_t s)
{
    return in + pad < k ? 0 : (in + pad - k) / s + 1;
}

/* The code a conv with K = ci kvol > 0 runs on. */
typedef enum { CONV_AMX, CONV_BLOCKED, CONV_IMPLICIT, CONV_IM2COL } conv_route;

static conv_route route_of(td_backend *be, const td_conv3d_params *p, int64_t ci, int64_t co)
{
    td_conv_path path = td_cpu_of(be)->conv_path;
    if (p->stride[0] != 1 || p->stride[1] != 1 || p->stride[2] != 1)
        return CONV_IM2COL;
#ifdef TD_X86
    if (co >= TD_CONV_AMX_MIN_CH && ci >= TD_CONV_AMX_MIN_CH && path == TD_CONV_AMX)
        return CONV_AMX;
    if (co >= 16 && path != TD_CONV_GEMM)
        return CONV_BLOCKED;
#else
    (void)path, (void)ci, (void)co;
#endif
    return CONV_IMPLICIT;
}

/* The strided conv's column tiles: rows of output per tile (*rows_per,
 * *npos_max positions), input channels per K chunk (*ch_per, *kchunk
 * columns); returns its scratch floats (a column tile, and the chunk's
 * widened weights unless they are f32). */
static size_t im2col_plan(int64_t ci, int64_t co, int64_t kvol, int64_t ho, int64_t wo, int wf32,
                          int64_t *rows_per, int64_t *npos_max, int64_t *ch_per, int64_t *kchunk)
{
    *rows_per = wo >= CONV_PT ? 1 : CONV_PT / wo;
    if (*rows_per > ho)
        *rows_per = ho;
    *npos_max = *rows_per * wo;
    *ch_per = kvol >= CONV_KT ? 1 : CONV_KT / kvol;
    if (*ch_per > ci)
        *ch_per = ci;
    *kchunk = *ch_per * kvol;
    return (size_t)(*kchunk * *npos_max) + (wf32 ? 0 : (size_t)(co * *kchunk));
}

size_t td_cpu_conv3d_workspace(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *y,
                               const td_conv3d_params *p)
{
    int64_t ci = x->shape[0], co = w->shape[0], kvol = w->shape[2] * w->shape[3] * w->shape[4];
    int64_t rows_per, npos_max, ch_per, kchunk;

    if (ci * kvol == 0 || td_numel(y) == 0)
        return 0;
    switch (route_of(be, p, ci, co)) {
    case CONV_AMX:
        return td_cpu_scratch_size(td_cpu_conv3d_amx_bytes(td_cpu_of(be)->nthreads, x, w, y, p));
#ifdef TD_X86
    case CONV_BLOCKED:
        return sizeof(float) * blocked_floats(ci, co, kvol);
#endif
    case CONV_IMPLICIT:
        return sizeof(float) * implicit_floats(ci, co, kvol);
    default:
        return sizeof(float) * im2col_plan(ci, co, kvol, y->shape[2], y->shape[3], w->dtype == TD_F32,
                                           &rows_per, &npos_max, &ch_per, &kchunk);
    }
}

int td_cpu_conv3d(td_backend *be, const td_tensor *x, const td_tensor *w,
                  const td_tensor *bias, const td_conv3d_params *p, td_tensor *y)
{
    static const char op[] = "conv3d";
    char s1[96], s2[96], s3[96];
    int64_t ci, t, h, wd, co, kt, kh, kw, kvol, kc, to, ho, wo, plane, npos_max, rows_per, ch_per, kchunk;
    float *scr, *col, *wt;
    int wf32;
    conv_route route;

    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_cpu_check_weight(be, op, "w", w));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_conv3d(be->ctx, op, x, w, y, p));
    ci = x->shape[0]; t = x->shape[1]; h = x->shape[2]; wd = x->shape[3];
    co = w->shape[0]; kt = w->shape[2]; kh = w->shape[3]; kw = w->shape[4];
    to = out_dim(t, p->pad_t_front + p->pad_t_back, kt, p->stride[0]);
    ho = out_dim(h, 2 * (int64_t)p->pad_h, kh, p->stride[1]);
    wo = out_dim(wd, 2 * (int64_t)p->pad_w, kw, p->stride[2]);
    if (y->shape[0] != co || y->shape[1] != to || y->shape[2] != ho || y->shape[3] != wo)
        return td_fail(be->ctx, TD_ESHAPE, "%s: y %s must be [%lld, %lld, %lld, %lld] for x %s and w %s",
                       op, td_shape_str(y, s3, sizeof(s3)), (long long)co, (long long)to, (long long)ho,
                       (long long)wo, td_shape_str(x, s1, sizeof(s1)), td_shape_str(w, s2, sizeof(s2)));
    if (bias)
        TD_TRY(td_check_float_vec(be->ctx, op, "bias", bias, co));
    kvol = kt * kh * kw;
    kc = ci * kvol;
    plane = ho * wo;
    if (co > INT32_MAX || kc > INT32_MAX || to * plane > INT32_MAX)
        return td_fail(be->ctx, TD_EINVAL, "%s: x %s is past sgemm's 32-bit sizes", op,
                       td_shape_str(x, s1, sizeof(s1)));
    if (co == 0 || to * plane == 0)
        return 0;
    route = route_of(be, p, ci, co);
    if (kc == 0) {
        memset(y->data, 0, (size_t)(co * to * plane) * sizeof(float));
#ifdef TD_X86
    } else if (route == CONV_AMX) {
        TD_TRY(td_cpu_conv3d_amx(be, x, w, p, y));
    } else if (route == CONV_BLOCKED) {
        TD_TRY(conv_blocked(be, x, w, p, y));
#endif
    } else if (route == CONV_IMPLICIT) {
        TD_TRY(conv_implicit(be, x, w, p, y));
    } else {
        wf32 = w->dtype == TD_F32;
        scr = td_cpu_scratch(be, im2col_plan(ci, co, kvol, ho, wo, wf32, &rows_per, &npos_max, &ch_per, &kchunk));
        if (!scr)
            return TD_ENOMEM;
        col = scr;
        wt = scr + kchunk * npos_max;
        for (int64_t o = 0; o < to; o++) {
            for (int64_t y0 = 0; y0 < ho; y0 += rows_per) {
                int64_t nrows = ho - y0 < rows_per ? ho - y0 : rows_per, npos = nrows * wo;
                float *yt = (float *)y->data + o * plane + y0 * wo;
                for (int64_t c0 = 0; c0 < ci; c0 += ch_per) {
                    int64_t nch = ci - c0 < ch_per ? ci - c0 : ch_per, nk = nch * kvol;
                    col_args ca = { x->data, col, t, h, wd, kt, kh, kw, ho, wo, p,
                                    c0 * kvol, o, y0, nrows, npos };
                    const float *a;
                    int64_t lda;
                    td_pool_for(td_cpu_pool(be), nk, 4, build_cols, &ca);
                    if (wf32) {
                        a = (const float *)w->data + c0 * kvol;
                        lda = kc;
                    } else {
                        td_cpu_widen_tile(be, w->dtype, (const unsigned char *)w->data +
                                          (size_t)(c0 * kvol) * td_dtype_size(w->dtype), kc, co, nk, wt);
                        a = wt;
                        lda = nk;
                    }
                    td_cpu_sgemm(be, 0, 0, co, npos, nk, 1.0f, a, lda, col, npos,
                                 c0 ? 1.0f : 0.0f, yt, to * plane);
                }
            }
        }
    }
    if (bias) {
        float *owned;
        cbias_args ba = { y->data, td_cpu_vec_f32(be, bias, &owned), to * plane };
        if (!ba.b)
            return TD_ENOMEM;
        td_pool_for(td_cpu_pool(be), co, 1, conv_bias, &ba);
        free(owned);
    }
    return 0;
}
