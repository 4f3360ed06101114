/*
 * The CUDA backend's GEMMs.
 *  - linear: x (f32) is rounded to bf16 and multiplied with the bf16 weight
 *    on the tensor cores by cuBLASLt, f32 accumulation and output, bias in
 *    the epilogue. Row-major y[M, N] = x[M, K] w[N, K]^T is, column-major,
 *    y^T (N x M) = op_T(w as K x N) . x^T (K x M).
 *  - linear_w8a8: TurboDiffusion's block-quantized int8 product (kernels/w8a8.cu).
 *  - gemm: plain f32 cuBLAS for the few callers that need it.
 */
#include "cuda.h"
#include "td_kernels.h"

/* The operand as bf16: the weight itself when stored so, else a scratch copy. */
static const void *as_bf16(td_backend *be, const void *p, td_dtype dt, int64_t n, int slot)
{
    uint16_t *tmp;
    if (dt == TD_BF16)
        return p;
    if (!(tmp = td_cuda_scratch(be, slot, (size_t)n * 2)))
        return NULL;
    if (td_cuda_check(be, tdk_to_bf16(p, td_cuda_wtype(dt), tmp, n, td_cuda_of(be)->stream),
                      "bf16 conversion") < 0)
        return NULL;
    return tmp;
}

static int check_linear(td_backend *be, const char *op, const td_tensor *x, const td_tensor *w,
                        const td_tensor *bias, const td_tensor *y, int64_t *m)
{
    char a[96], b[96], c[96];
    int64_t n = w->shape[0], k = w->shape[1];
    TD_TRY(td_cuda_check_act(be, op, "x", x));
    TD_TRY(td_cuda_check_act(be, op, "y", y));
    *m = k ? td_numel(x) / k : 0;
    if (w->ndim != 2 || x->shape[x->ndim - 1] != k || y->shape[y->ndim - 1] != n ||
        td_numel(y) != *m * n)
        return td_fail(be->ctx, TD_ESHAPE, "%s: x %s, w %s and y %s do not fit (y[M, N] = x[M, K] "
                       "w[N, K]^T)", op, td_shape_str(x, a, sizeof(a)), td_shape_str(w, b, sizeof(b)),
                       td_shape_str(y, c, sizeof(c)));
    if (bias)
        TD_TRY(td_cuda_check_vec(be, op, "bias", bias, n));
    return 0;
}

typedef struct lt_descs {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
} lt_descs;

static void lt_free(lt_descs *d)
{
    if (d->c)
        cublasLtMatrixLayoutDestroy(d->c);
    if (d->b)
        cublasLtMatrixLayoutDestroy(d->b);
    if (d->a)
        cublasLtMatrixLayoutDestroy(d->a);
    if (d->op)
        cublasLtMatmulDescDestroy(d->op);
}

int td_cuda_linear(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *bias,
                   td_tensor *y)
{
    td_cuda *c = td_cuda_of(be);
    int64_t m, n = w->shape[0], k = w->shape[1];
    const void *xb, *wb;
    const float *bf = NULL;
    lt_descs d = { 0 };
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0, rc;
    float one = 1.0f, zero = 0.0f;
    size_t ws = c->lt_workspace.bytes;

    if (td_cuda_wtype(w->dtype) < 0)
        return td_fail(be->ctx, TD_EINVAL, "linear: weight must be f32, bf16 or f16");
    TD_TRY(check_linear(be, "linear", x, w, bias, y, &m));
    if (!m || !n)
        return 0;
    if (!(xb = as_bf16(be, x->data, TD_F32, m * k, 0)) || !(wb = as_bf16(be, w->data, w->dtype, n * k, 1)))
        return be->ctx->err;
    if (bias) {
        bf = bias->data;
        if (bias->dtype != TD_F32) {
            float *tmp = td_cuda_scratch(be, 2, (size_t)n * sizeof(float));
            if (!tmp)
                return be->ctx->err;
            TD_TRY(td_cuda_check(be, tdk_to_f32(bias->data, td_cuda_wtype(bias->dtype), tmp, n, c->stream),
                                 "bias widening"));
            bf = tmp;
        }
    }
    rc = td_cuda_check_blas(be, cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc");
    if (rc == 0)
        rc = td_cuda_check_blas(be, cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), "transa");
    if (rc == 0)
        rc = td_cuda_check_blas(be, cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), "transb");
    if (rc == 0 && bf) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t bt = CUDA_R_32F;
        rc = td_cuda_check_blas(be, cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)), "epilogue");
        if (rc == 0)
            rc = td_cuda_check_blas(be, cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bf, sizeof(bf)), "bias pointer");
        if (rc == 0)
            rc = td_cuda_check_blas(be, cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)), "bias type");
    }
    if (rc == 0)
        rc = td_cuda_check_blas(be, cublasLtMatrixLayoutCreate(&d.a, CUDA_R_16BF, (uint64_t)k, (uint64_t)n, k), "layout w");
    if (rc == 0)
        rc = td_cuda_check_blas(be, cublasLtMatrixLayoutCreate(&d.b, CUDA_R_16BF, (uint64_t)k, (uint64_t)m, k), "layout x");
    if (rc == 0)
        rc = td_cuda_check_blas(be, cublasLtMatrixLayoutCreate(&d.c, CUDA_R_32F, (uint64_t)n, (uint64_t)m, n), "layout y");
    if (rc == 0)
        rc = td_cuda_check_blas(be, cublasLtMatmulPreferenceCreate(&pref), "preference");
    if (rc == 0)
        rc = td_cuda_check_blas(be, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)), "workspace");
    if (rc == 0)
        rc = td_cuda_check_blas(be, cublasLtMatmulAlgoGetHeuristic(c->lt, d.op, d.a, d.b, d.c, d.c, pref, 1, &heur, &found), "heuristic");
    if (rc == 0 && !found)
        rc = td_fail(be->ctx, TD_EDEVICE, "cublasLt: no algorithm for a bf16 %lldx%lldx%lld GEMM",
                     (long long)m, (long long)n, (long long)k);
    if (rc == 0)
        rc = td_cuda_check_blas(be, cublasLtMatmul(c->lt, d.op, &one, wb, d.a, xb, d.b, &zero, y->data, d.c,
                                                   y->data, d.c, &heur.algo, c->lt_workspace.ptr, ws, c->stream),
                                "bf16 linear");
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    lt_free(&d);
    return rc;
}

int td_cuda_linear_w8a8(td_backend *be, const td_tensor *x, const td_tensor *wq,
                        const td_tensor *wscale, const td_tensor *bias, td_tensor *y)
{
    td_cuda *c = td_cuda_of(be);
    int64_t m, n = wq->shape[0], k = wq->shape[1], mb, kb;
    int8_t *xq;
    float *xs;

    if (wq->dtype != TD_I8 || wq->ndim != 2)
        return td_fail(be->ctx, TD_EINVAL, "linear_w8a8: wq must be a 2-D int8 tensor");
    TD_TRY(check_linear(be, "linear_w8a8", x, wq, bias, y, &m));
    mb = (m + 127) / 128, kb = (k + 127) / 128;
    if (wscale->dtype != TD_F32 || td_numel(wscale) != ((n + 127) / 128) * kb)
        return td_fail(be->ctx, TD_ESHAPE, "linear_w8a8: wscale must be f32 [%lld, %lld]",
                       (long long)((n + 127) / 128), (long long)kb);
    if (!m || !n)
        return 0;
    if (!(xq = td_cuda_scratch(be, 0, (size_t)(m * k))) || !(xs = td_cuda_scratch(be, 1, sizeof(float) * (size_t)(mb * kb))))
        return be->ctx->err;
    TD_TRY(td_cuda_check(be, tdk_quantize_blocks(x->data, xq, xs, m, k, c->stream), "w8a8 quantize"));
    return td_cuda_check(be, tdk_gemm_w8a8(xq, xs, wq->data, wscale->data, bias ? bias->data : NULL,
                                           bias ? td_cuda_wtype(bias->dtype) : TDK_F32, y->data, m, n, k,
                                           c->stream), "w8a8 gemm");
}

int td_cuda_gemm(td_backend *be, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                 float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                 float *c, int64_t ldc)
{
    /* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T. */
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || lda > INT32_MAX || ldb > INT32_MAX || ldc > INT32_MAX)
        return td_fail(be->ctx, TD_EINVAL, "gemm: sizes past cuBLAS's 32-bit arguments");
    return td_cuda_check_blas(be, cublasSgemm(td_cuda_of(be)->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                              trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m, (int)k,
                                              &alpha, b, (int)ldb, a, (int)lda, &beta, c, (int)ldc),
                              "sgemm");
}
