/*
 * 3-D convolution on the CUDA backend, bf16 in and out with f32 sums, by
 * two paths (td_cuda_conv_path):
 *
 * im2col + GEMM (always built): y[Co, P] = w[Co, Kc] col[Kc, P], Kc =
 * Ci*kt*kh*kw, over the output positions P (frame by frame, row by row)
 * walked in chunks whose bf16 column buffer fits CONV_COL_BYTES of arena
 * scratch, each chunk one f32-accumulated cuBLASLt GEMM. im2col reads zeros
 * past the input's ends, which is both time paddings.
 *
 * cuDNN (TD_HAVE_CUDNN, a handle in td_cuda): cudnnConvolutionForward on
 * [1, C, T, H, W] tensors in their own strides. Its descriptors pad
 * symmetrically, and ours pads time asymmetrically (front pad_t_front, back
 * pad_t_back: a causal conv pads 2 frames in front and none behind), so
 * cuDNN gets no time padding at all; instead the output frames split by
 * what their window reads. Output frame o reads input frames
 * o*st - front + dt, dt in [0, kt): it lies wholly inside [0, T) when
 *   o >= f0 = ceil(front / st)  and  o <= (T - kt + front) / st (floor),
 * the interior [f0, f1). cuDNN computes the interior from an input view
 * that starts at frame a = f0*st - front (>= 0) and is L = (n-1)*st + kt
 * frames long (n = f1 - f0, so a + L <= T): unpadded in time, its output
 * j reads view frames j*st + dt = input frames (f0 + j)*st - front + dt,
 * exactly output frame f0 + j's, and there are (L - kt)/st + 1 = n of them,
 * written into y's frames [f0, f1) through a view with y's own strides.
 * No output outside y is written and no padding frame is read as data. The
 * frames before f0 and from f1 on (their windows reach into the padding:
 * with the VAE's causal convs only the first chunk's, whose cache is not
 * full yet) go through im2col, which pads. H and W padding are symmetric in
 * both, and go to cuDNN as they are.
 *
 * cuDNN is asked once per geometry (td_cuda's conv_plans) for its
 * deterministic GEMM-family algorithms, in its own order; a run takes the
 * first whose workspace fits CONV_WS_BYTES and the arena. A geometry cuDNN
 * declines (its NOT_SUPPORTED statuses) runs im2col whole; any other cuDNN
 * status fails the op, naming it. The bias is added by tdk_bias_rows after
 * either path, over all of y.
 */
#include <limits.h>
#include <string.h>

#include "cuda_internal.h"

#define CONV_COL_BYTES ((size_t)256 << 20)
#define CONV_WS_BYTES ((size_t)256 << 20)

/* The output positions of frames [o0, o1) by im2col + GEMM. */
static int conv_im2col(td_backend *be, const td_tensor *x, const td_tensor *w, const td_kconv3d *g, int64_t co,
                       int64_t to, int64_t o0, int64_t o1, td_tensor *y)
{
    td_cuda *c = td_cuda_of(be);
    size_t mark = c->arena_used;
    int64_t kc = g->ci * g->kt * g->kh * g->kw, npos = to * g->ho * g->wo;
    int64_t p1 = o1 * g->ho * g->wo, chunk;
    td_bf16_bits *col;
    int rc = 0;

    if (o1 <= o0)
        return 0;
    if (kc == 0)
        return td_cuda_unsupported(be, "conv3d", "an empty kernel");
    chunk = (int64_t)(CONV_COL_BYTES / 2) / kc;
    if (chunk < 1)
        return td_cuda_unsupported(be, "conv3d", "a kernel volume past the column buffer");
    if (chunk > p1 - o0 * g->ho * g->wo)
        chunk = p1 - o0 * g->ho * g->wo;
    col = td_cuda_scratch(be, (size_t)(chunk * kc) * 2, "conv3d: im2col columns");
    if (!col)
        return be->ctx->err;
    for (int64_t p0 = o0 * g->ho * g->wo; p0 < p1 && rc == 0; p0 += chunk) {
        int64_t np = p1 - p0 < chunk ? p1 - p0 : chunk;
        rc = td_cuda_check(be, tdk_im2col3d(c->stream, x->data, g, p0, np, col), "conv3d: im2col");
        /* y[:, p0:p0+np] (row stride npos) = w[Co, Kc] . col[np, Kc]^T */
        if (rc == 0)
            rc = td_cuda_lt_linear(be, col, w->data, NULL, 0, (td_bf16_bits *)y->data + p0, co, np, kc, npos);
    }
    c->arena_used = mark;
    return rc;
}

#ifdef TD_HAVE_CUDNN

#define DECLINED 1

/* The interior's geometry: the view of x from frame a, len frames long,
 * and its n output frames from f0, with both views' data. */
typedef struct conv_interior {
    int64_t a, len, f0, n;
    const td_bf16_bits *x;
    td_bf16_bits *y;
} conv_interior;

typedef struct conv_desc {
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
} conv_desc;

/* 0, DECLINED where cuDNN says it has nothing for this (its NOT_SUPPORTED
 * category, or a pointer short of an algorithm's alignment), else td_fail
 * naming conv3d and cuDNN's reason. */
static int dnn_status(td_backend *be, cudnnStatus_t st, const char *what)
{
    if (CUDNN_STATUS_CATEGORY(st) == CUDNN_STATUS_NOT_SUPPORTED || st == CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER)
        return DECLINED;
    return td_cuda_dnn_check(be, st, what);
}

static void desc_free(conv_desc *d)
{
    if (d->x)
        cudnnDestroyTensorDescriptor(d->x);
    if (d->y)
        cudnnDestroyTensorDescriptor(d->y);
    if (d->w)
        cudnnDestroyFilterDescriptor(d->w);
    if (d->conv)
        cudnnDestroyConvolutionDescriptor(d->conv);
}

static int fits_int(const int64_t *v, int n)
{
    for (int i = 0; i < n; i++)
        if (v[i] > INT_MAX)
            return 0;
    return 1;
}

/* The interior's descriptors: x view [1, Ci, L, H, W] and y view
 * [1, Co, n, Ho, Wo] in the full tensors' strides, w [Co, Ci, kt, kh, kw],
 * no time padding, f32 compute. DECLINED when a size is past cuDNN's int. */
static int desc_make(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *y,
                     const td_conv3d_params *p, const conv_interior *in, conv_desc *d)
{
    const int64_t *xs = x->shape, *ws = w->shape, *ys = y->shape;
    int64_t xd[5] = { 1, xs[0], in->len, xs[2], xs[3] }, xst[5] = { xs[0] * xs[1] * xs[2] * xs[3],
                                                                     xs[1] * xs[2] * xs[3], xs[2] * xs[3], xs[3], 1 };
    int64_t yd[5] = { 1, ys[0], in->n, ys[2], ys[3] }, yst[5] = { ys[0] * ys[1] * ys[2] * ys[3],
                                                                  ys[1] * ys[2] * ys[3], ys[2] * ys[3], ys[3], 1 };
    int xi[5], xsi[5], yi[5], ysi[5], wi[5];
    const int pad[3] = { 0, p->pad_h, p->pad_w }, stride[3] = { p->stride[0], p->stride[1], p->stride[2] };
    const int dil[3] = { 1, 1, 1 };
    int rc;

    memset(d, 0, sizeof(*d));
    if (!fits_int(xd, 5) || !fits_int(xst, 5) || !fits_int(yd, 5) || !fits_int(yst, 5) || !fits_int(ws, 5))
        return DECLINED;
    for (int i = 0; i < 5; i++) {
        xi[i] = (int)xd[i], xsi[i] = (int)xst[i], yi[i] = (int)yd[i], ysi[i] = (int)yst[i];
        wi[i] = (int)ws[i];
    }
    rc = dnn_status(be, cudnnCreateTensorDescriptor(&d->x), "conv3d: x descriptor");
    if (rc == 0)
        rc = dnn_status(be, cudnnSetTensorNdDescriptor(d->x, CUDNN_DATA_BFLOAT16, 5, xi, xsi), "conv3d: x descriptor");
    if (rc == 0)
        rc = dnn_status(be, cudnnCreateTensorDescriptor(&d->y), "conv3d: y descriptor");
    if (rc == 0)
        rc = dnn_status(be, cudnnSetTensorNdDescriptor(d->y, CUDNN_DATA_BFLOAT16, 5, yi, ysi), "conv3d: y descriptor");
    if (rc == 0)
        rc = dnn_status(be, cudnnCreateFilterDescriptor(&d->w), "conv3d: w descriptor");
    if (rc == 0)
        rc = dnn_status(be, cudnnSetFilterNdDescriptor(d->w, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_NCHW, 5, wi),
                        "conv3d: w descriptor");
    if (rc == 0)
        rc = dnn_status(be, cudnnCreateConvolutionDescriptor(&d->conv), "conv3d: convolution descriptor");
    if (rc == 0)
        rc = dnn_status(be, cudnnSetConvolutionNdDescriptor(d->conv, 3, pad, stride, dil, CUDNN_CROSS_CORRELATION,
                                                            CUDNN_DATA_FLOAT), "conv3d: convolution descriptor");
    if (rc != 0)
        desc_free(d);
    return rc;
}

/* The plan's key: every number the descriptors are made of. */
static void plan_key(const td_tensor *x, const td_tensor *w, const td_tensor *y, const td_conv3d_params *p,
                     const conv_interior *in, int64_t key[TD_CUDA_CONV_KEY])
{
    const int64_t k[TD_CUDA_CONV_KEY] = { x->shape[0], x->shape[1], x->shape[2], x->shape[3], in->len,
                                          y->shape[0], y->shape[1], y->shape[2], y->shape[3], in->n,
                                          w->shape[2], w->shape[3], w->shape[4],
                                          p->stride[0], p->stride[1], p->stride[2], p->pad_h, p->pad_w };
    memcpy(key, k, sizeof(k));
}

/* cuDNN's deterministic GEMM-family algorithms (implicit, precomputed
 * implicit and explicit GEMM) for the geometry, fastest first by its
 * heuristics, with their workspace; n == 0 when it has none. Winograd and
 * FFT transform the operands, which rounds otherwise than the plain f32 dot
 * products of the other backends, so they are left out, and DIRECT with
 * them: the kept set is the one whose sums are the CPU's up to order. */
static int plan_ask(td_backend *be, conv_desc *d, td_cuda_conv_plan *pl)
{
    td_cuda *c = td_cuda_of(be);
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0, rc;

    pl->n = 0;
    rc = dnn_status(be, cudnnSetConvolutionMathType(d->conv, CUDNN_TENSOR_OP_MATH), "conv3d: math type");
    if (rc == 0)
        rc = dnn_status(be, cudnnGetConvolutionForwardAlgorithm_v7(c->dnn, d->x, d->w, d->conv, d->y,
                                                                   CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf),
                        "conv3d: algorithm heuristics");
    for (int i = 0; rc == 0 && i < got && pl->n < TD_CUDA_CONV_ALGOS; i++) {
        cudnnConvolutionFwdAlgo_t a = perf[i].algo;
        size_t ws = 0;
        if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].determinism != CUDNN_DETERMINISTIC ||
            (a != CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM && a != CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM &&
             a != CUDNN_CONVOLUTION_FWD_ALGO_GEMM))
            continue;
        rc = dnn_status(be, cudnnSetConvolutionMathType(d->conv, perf[i].mathType), "conv3d: math type");
        if (rc == 0)
            rc = dnn_status(be, cudnnGetConvolutionForwardWorkspaceSize(c->dnn, d->x, d->w, d->conv, d->y, a, &ws),
                            "conv3d: workspace size");
        if (rc == DECLINED) {   /* this one only */
            rc = 0;
            continue;
        }
        if (rc == 0) {
            pl->algo[pl->n] = a;
            pl->math[pl->n] = perf[i].mathType;
            pl->workspace[pl->n++] = ws;
        }
    }
    return rc == DECLINED ? 0 : rc;
}

/* The geometry's plan, asked for on first sight; NULL after a td_fail. */
static td_cuda_conv_plan *plan_of(td_backend *be, conv_desc *d, const int64_t key[TD_CUDA_CONV_KEY])
{
    td_cuda *c = td_cuda_of(be);
    td_cuda_conv_plan fresh, *pl;

    for (int i = 0; i < c->conv_nplans; i++)
        if (memcmp(c->conv_plans[i].key, key, sizeof(c->conv_plans[i].key)) == 0)
            return &c->conv_plans[i];
    memcpy(fresh.key, key, sizeof(fresh.key));
    if (plan_ask(be, d, &fresh) < 0)
        return NULL;
    pl = &c->conv_plans[c->conv_next];
    *pl = fresh;
    c->conv_next = (c->conv_next + 1) % TD_CUDA_CONV_PLANS;
    if (c->conv_nplans < TD_CUDA_CONV_PLANS)
        c->conv_nplans++;
    if (pl->n == 0)
        td_log(be->ctx, TD_LOG_DEBUG, "conv3d: cuDNN has no deterministic GEMM algorithm for x [%lld, %lld, %lld, "
               "%lld] w [%lld, %lld, %lld, %lld, %lld]: im2col", (long long)key[0], (long long)key[4],
               (long long)key[2], (long long)key[3], (long long)key[5], (long long)key[0], (long long)key[10],
               (long long)key[11], (long long)key[12]);
    return pl;
}

/* The interior frames by cuDNN: 0, DECLINED (nothing written), or a td_fail. */
static int conv_cudnn(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *y,
                      const td_conv3d_params *p, const conv_interior *in)
{
    td_cuda *c = td_cuda_of(be);
    size_t mark = c->arena_used, room = td_cuda_scratch_room(be);
    const float one = 1.0f, zero = 0.0f;
    int64_t key[TD_CUDA_CONV_KEY];
    td_cuda_conv_plan *pl;
    conv_desc d;
    void *ws = NULL;
    int rc, pick = -1;

    /* The views start where their first frame does; cuDNN's tensor-core
     * kernels read 16-byte vectors, and a view off that is rare enough
     * (an odd H*W with a strided or padded time axis) to leave to im2col. */
    if ((uintptr_t)in->x % 16 || (uintptr_t)in->y % 16)
        return DECLINED;
    plan_key(x, w, y, p, in, key);
    rc = desc_make(be, x, w, y, p, in, &d);
    if (rc != 0)
        return rc;
    pl = plan_of(be, &d, key);
    if (!pl) {
        desc_free(&d);
        return be->ctx->err;
    }
    if (room > CONV_WS_BYTES)
        room = CONV_WS_BYTES;
    for (int i = 0; i < pl->n && pick < 0; i++)
        if (pl->workspace[i] <= room)
            pick = i;
    rc = pick < 0 ? DECLINED : 0;
    if (rc == 0 && pl->workspace[pick] > 0 && !(ws = td_cuda_scratch(be, pl->workspace[pick], "conv3d: cuDNN workspace")))
        rc = be->ctx->err;
    if (rc == 0)
        rc = dnn_status(be, cudnnSetConvolutionMathType(d.conv, pl->math[pick]), "conv3d: math type");
    if (rc == 0)
        rc = dnn_status(be, cudnnConvolutionForward(c->dnn, &one, d.x, in->x, d.w, w->data, d.conv, pl->algo[pick],
                                                    ws, pl->workspace[pick], &zero, d.y, in->y),
                        "conv3d: forward");
    if (rc == DECLINED && pick >= 0) {   /* the heuristics offered it; do not ask again for this geometry */
        td_log(be->ctx, TD_LOG_DEBUG, "conv3d: cuDNN declined its own algorithm %d for this geometry: im2col",
               (int)pl->algo[pick]);
        pl->n = 0;
    }
    c->arena_used = mark;
    desc_free(&d);
    return rc;
}

/* Output frames [f0, f1) whose windows lie inside the input (see the top). */
static conv_interior interior_of(const td_kconv3d *g, int64_t front, int64_t to, const td_tensor *x,
                                 const td_tensor *y)
{
    conv_interior in = { 0, 0, 0, 0, NULL, NULL };
    int64_t f0 = (front + g->st - 1) / g->st, f1 = g->t - g->kt + front < 0 ? 0 : (g->t - g->kt + front) / g->st + 1;
    if (f1 > to)
        f1 = to;
    if (f1 > f0) {
        in.f0 = f0;
        in.n = f1 - f0;
        in.a = f0 * g->st - front;
        in.len = (in.n - 1) * g->st + g->kt;
        in.x = (const td_bf16_bits *)x->data + in.a * g->h * g->w;
        in.y = (td_bf16_bits *)y->data + in.f0 * g->ho * g->wo;
    }
    return in;
}
#endif

int td_cuda_conv3d(td_backend *be, const td_tensor *x, const td_tensor *w,
                   const td_tensor *bias, const td_conv3d_params *p, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    static const char op[] = "conv3d";
    td_cuda *c = td_cuda_of(be);
    td_kconv3d g;
    int64_t co, to;
    int rc = 0, done = 0;

    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_cuda_check_weight(be, op, "w", w));
    TD_TRY(td_check_conv3d(be->ctx, op, x, w, y, p));
    g = (td_kconv3d){ x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[2], w->shape[3], w->shape[4],
                      y->shape[2], y->shape[3], p->stride[0], p->stride[1], p->stride[2], p->pad_t_front,
                      p->pad_h, p->pad_w };
    co = w->shape[0];
    to = y->shape[1];
    if (bias)
        TD_TRY(td_check_float_vec(be->ctx, op, "bias", bias, co));
    if (co == 0 || to * g.ho * g.wo == 0)
        return 0;
#ifdef TD_HAVE_CUDNN
    if (c->conv_path == TD_CUDA_CONV_CUDNN && c->dnn && g.ci * g.kt * g.kh * g.kw > 0) {
        conv_interior in = interior_of(&g, p->pad_t_front, to, x, y);
        rc = in.n > 0 ? conv_cudnn(be, x, w, y, p, &in) : DECLINED;
        if (rc == 0) {
            rc = conv_im2col(be, x, w, &g, co, to, 0, in.f0, y);
            if (rc == 0)
                rc = conv_im2col(be, x, w, &g, co, to, in.f0 + in.n, to, y);
            done = 1;
        }
        if (rc == DECLINED)
            rc = 0;
    }
#endif
    if (rc == 0 && !done)
        rc = conv_im2col(be, x, w, &g, co, to, 0, to, y);
    if (rc == 0 && bias)
        rc = td_cuda_check(be, tdk_bias_rows(c->stream, y->data, co, to * g.ho * g.wo, td_cuda_vec(bias)),
                           "conv3d: bias");
    return rc;
}
