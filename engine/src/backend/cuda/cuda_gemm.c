/*
 * GEMMs on the CUDA backend: the bf16 linear through cuBLASLt (bias, and the
 * FFN's GELU, fused as its epilogue), TurboDiffusion's W8A8 linear through our quantize and
 * int8 tensor-core kernels (kernels/w8a8.cu), and the batched matmul
 * through cuBLAS's strided-batched GEMM (bf16 in and out, f32 compute).
 */
#include <stdint.h>

#include "cuda_internal.h"

#define QB 128

/* Largest power of two (<= 256) dividing the address: what cuBLASLt may
 * assume about a pointer, so views at odd offsets get a kernel that fits. */
static uint32_t align_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 2 && a % al)
        al >>= 1;
    return al;
}

static int check_linear_io(td_backend *be, const char *op, const td_tensor *x, const char *w_name,
                           const td_tensor *w, const td_tensor *bias, const td_tensor *y, int64_t *m)
{
    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_linear_shapes(be->ctx, op, x, w_name, w, y, m));
    if (bias)
        TD_TRY(td_check_float_vec(be->ctx, op, "bias", bias, w->shape[0]));
    return 0;
}

int td_cuda_lt_linear(td_backend *be, const void *w, const void *x, const void *bias, int gelu, void *y,
                      int64_t m, int64_t n, int64_t k, int64_t ldy)
{
    td_cuda *c = td_cuda_of(be);
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t lw = NULL, lx = NULL, ly = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    /* cuBLASLt's GELU is the tanh form, the one Wan's FFN takes (PyTorch's
     * CUDA addmm falls back to gelu(approximate="tanh") where it cannot
     * use this epilogue); tests/cuda compares it with the CPU's gelu_tanh */
    cublasLtEpilogue_t epi = gelu ? (bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU)
                                  : CUBLASLT_EPILOGUE_BIAS;
    uint32_t aw = align_of(w), ax = align_of(x), ay = align_of(y);
    uint64_t wsb = c->lt_workspace_bytes;
    float alpha = 1.0f, beta = 0.0f;
    int nres = 0, rc;

#define LT(call, what) do { rc = td_cuda_blas_check(be, (call), what); if (rc < 0) goto done; } while (0)
    LT(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "linear: descriptor");
    LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), "linear: transa");
    LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), "linear: transb");
    if (bias || gelu)
        LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)),
           "linear: epilogue");
    if (bias)
        LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)),
           "linear: bias pointer");
    LT(cublasLtMatrixLayoutCreate(&lw, CUDA_R_16BF, (uint64_t)k, (uint64_t)n, k), "linear: w layout");
    LT(cublasLtMatrixLayoutCreate(&lx, CUDA_R_16BF, (uint64_t)k, (uint64_t)m, k), "linear: x layout");
    LT(cublasLtMatrixLayoutCreate(&ly, CUDA_R_16BF, (uint64_t)n, (uint64_t)m, ldy), "linear: y layout");
    LT(cublasLtMatmulPreferenceCreate(&pref), "linear: preference");
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof(wsb)),
       "linear: workspace");
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aw, sizeof(aw)),
       "linear: alignment");
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ax, sizeof(ax)),
       "linear: alignment");
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ay, sizeof(ay)),
       "linear: alignment");
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ay, sizeof(ay)),
       "linear: alignment");
    LT(cublasLtMatmulAlgoGetHeuristic(c->lt, desc, lw, lx, ly, ly, pref, 1, &res, &nres), "linear: heuristic");
    if (nres == 0) {
        /* Leading dims or pointers cuBLASLt has no kernel for (odd sizes):
         * cuBLAS's GemmEx takes any, and the bias follows as a kernel. */
        if ((bias && ldy != n) || m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || ldy > INT32_MAX) {
            rc = td_fail(be->ctx, TD_EUNSUPPORTED, "linear: no cuBLASLt kernel for M=%lld N=%lld K=%lld",
                         (long long)m, (long long)n, (long long)k);
            goto done;
        }
        LT(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)m, (int)k, &alpha, w, CUDA_R_16BF,
                        (int)k, x, CUDA_R_16BF, (int)k, &beta, y, CUDA_R_16BF, (int)ldy, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT), "linear: GemmEx");
        if (bias)
            rc = td_cuda_check(be, tdk_binary(c->stream, TD_K_ADD, y, m * n, (td_kvec){ bias, TD_K_BF16 }, n, y),
                               "linear: bias");
        if (rc == 0 && gelu)
            rc = td_cuda_check(be, tdk_unary(c->stream, TD_K_GELU_TANH, y, m * n, y), "linear: gelu");
        goto done;
    }
    LT(cublasLtMatmul(c->lt, desc, &alpha, w, lw, x, lx, &beta, y, ly, y, ly, &res.algo, c->lt_workspace,
                      c->lt_workspace_bytes, c->stream), "linear: matmul");
#undef LT
done:
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    if (ly)
        cublasLtMatrixLayoutDestroy(ly);
    if (lx)
        cublasLtMatrixLayoutDestroy(lx);
    if (lw)
        cublasLtMatrixLayoutDestroy(lw);
    if (desc)
        cublasLtMatmulDescDestroy(desc);
    return rc;
}

/* The weight is bf16 since upload; a non-bf16 bias (a host-side tensor
 * the caller made with another dtype) is added by a broadcast kernel after
 * the GEMM instead of the epilogue, and then so is the GELU. */
static int linear_act(td_backend *be, const char *op, const td_tensor *x, const td_tensor *w,
                      const td_tensor *bias, int gelu, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    td_cuda *c = td_cuda_of(be);
    char s[96];
    int64_t m, n, k;
    int rc, late;

    TD_TRY(td_cuda_check_weight(be, op, "w", w));
    if (w->ndim != 2)
        return td_fail(be->ctx, TD_ESHAPE, "%s: w %s must be [N, K]", op, td_shape_str(w, s, sizeof(s)));
    TD_TRY(check_linear_io(be, op, x, "w", w, bias, y, &m));
    n = w->shape[0];
    k = w->shape[1];
    if (m == 0 || n == 0)
        return 0;
    if (k == 0)
        return td_cuda_unsupported(be, op, "K = 0");
    late = bias && bias->dtype != TD_BF16;
    rc = td_cuda_lt_linear(be, w->data, x->data, bias && !late ? bias->data : NULL, gelu && !late, y->data,
                           m, n, k, n);
    if (rc == 0 && late)
        rc = td_cuda_check(be, tdk_binary(c->stream, TD_K_ADD, y->data, m * n, td_cuda_vec(bias), n, y->data), op);
    if (rc == 0 && late && gelu)
        rc = td_cuda_check(be, tdk_unary(c->stream, TD_K_GELU_TANH, y->data, m * n, y->data), op);
    return rc;
}

int td_cuda_linear(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *bias, td_tensor *y)
{
    return linear_act(be, "linear", x, w, bias, 0, y);
}

int td_cuda_linear_gelu_tanh(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *bias,
                             td_tensor *y)
{
    return linear_act(be, "linear_gelu_tanh", x, w, bias, 1, y);
}

int td_cuda_linear_w8a8(td_backend *be, const td_tensor *x, const td_tensor *wq,
                        const td_tensor *wscale, const td_tensor *bias, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    static const char op[] = "linear_w8a8";
    td_cuda *c = td_cuda_of(be);
    size_t mark = c->arena_used;
    int64_t n, k, m, nkb;
    int8_t *xq;
    float *xs;
    int rc;

    TD_TRY(td_check_w8a8_weight(be->ctx, op, wq, wscale));
    n = wq->shape[0];
    k = wq->shape[1];
    nkb = (k + QB - 1) / QB;
    TD_TRY(check_linear_io(be, op, x, "wq", wq, bias, y, &m));
    if (m == 0 || n == 0)
        return 0;
    if ((m + 63) / 64 > 65535 || (m + QB - 1) / QB > 65535)
        return td_fail(be->ctx, TD_EINVAL, "%s: %lld rows are past the kernel's grid", op, (long long)m);
    xq = td_cuda_scratch(be, (size_t)(m * k), "linear_w8a8: int8 activations");
    xs = xq ? td_cuda_scratch(be, (size_t)(((m + QB - 1) / QB) * nkb) * sizeof(float),
                              "linear_w8a8: activation scales") : NULL;
    if (!xs) {
        c->arena_used = mark;
        return TD_ENOMEM;
    }
    rc = td_cuda_check(be, tdk_w8a8_quantize(c->stream, x->data, m, k, xq, xs), "linear_w8a8: quantize");
    if (rc == 0)
        rc = td_cuda_check(be, tdk_w8a8_gemm(c->stream, xq, xs, wq->data, wscale->data, m, n, k,
                                             td_cuda_vec(bias), y->data), "linear_w8a8: gemm");
    c->arena_used = mark;
    return rc;
}

/* matmul's b as bf16: b itself, or (an f32 or f16 tensor the caller made)
 * narrowed into contiguous arena scratch, with *d redone for that copy. */
static int matmul_b_bf16(td_backend *be, const td_tensor *a, const td_tensor *b, int trans_b, const td_tensor *y,
                         td_tensor *nb, td_matmul_dims *d)
{
    *nb = *b;
    if (b->dtype == TD_BF16)
        return 0;
    *nb = td_view(NULL, TD_BF16, b->ndim, b->shape);
    nb->data = td_cuda_scratch(be, (size_t)td_numel(b) * 2, "matmul: b narrowed to bf16");
    if (!nb->data)
        return be->ctx->err;
    TD_TRY(td_cuda_copy(be, nb, b, 0));
    return td_check_matmul(be->ctx, be->act, a, nb, trans_b, y, d);
}

/* Row-major y = a op(b) is column-major y^T = op(b)^T a^T: cuBLAS gets b
 * as its first operand. A shared b has batch stride 0. */
int td_cuda_matmul(td_backend *be, const td_tensor *a, const td_tensor *b, int trans_b, float alpha, float beta,
                   td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    td_cuda *c = td_cuda_of(be);
    size_t mark = c->arena_used;
    td_matmul_dims d;
    td_tensor nb;
    int rc;

    TD_TRY(td_check_matmul(be->ctx, be->act, a, b, trans_b, y, &d));
    if (d.batch == 0 || d.m == 0 || d.n == 0)
        return 0;
    if (d.k == 0)   /* no products: cuBLAS would be handed leading dims of 0 */
        return beta == 0.0f ? td_cuda_fill(be, y, 0.0f) : td_cuda_unsupported(be, "matmul", "K = 0 with beta != 0");
    rc = matmul_b_bf16(be, a, b, trans_b, y, &nb, &d);
    if (rc == 0)
        rc = td_cuda_blas_check(be, cublasGemmStridedBatchedEx(
                                        c->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, (int)d.n, (int)d.m,
                                        (int)d.k, &alpha, nb.data, CUDA_R_16BF, (int)d.ldb, d.sb, a->data, CUDA_R_16BF,
                                        (int)d.lda, d.sa, &beta, y->data, CUDA_R_16BF, (int)d.ldy, d.sy, (int)d.batch,
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                                "matmul");
    c->arena_used = mark;
    return rc;
}
