/*
 * CUDA GEMM throughput at every GEMM shape of one Wan2.1-1.3B block at 480p
 * x 81 frames (32760 tokens, dim 1536, FFN 8960, 512 text tokens) plus the
 * text embedding (512 x 4096 -> 1536): our bf16 linear op (cuBLASLt) and
 * our W8A8 op, as TFLOP/s and as a share of the bf16 peak that a large
 * square cublasGemmEx reaches in the same run on the same GPU.
 * Usage: bench_cuda_gemm [device [reps]]
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/backend.h"

typedef struct { const char *name; int64_t m, k, n; } shape;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Host [r, c] tensor of dtype dt with small pseudo-random values (a [1, n]
 * bias is fine: vector arguments are checked by element count). */
static int host_rand(td_ctx *ctx, td_tensor *t, td_dtype dt, int64_t r, int64_t c, unsigned seed)
{
    int64_t s[2] = { r, c };
    TD_TRY(td_tensor_new(ctx, t, dt, 2, s));
    for (int64_t i = 0; i < r * c; i++) {
        float v;
        seed = seed * 1664525u + 1013904223u;
        v = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
        if (dt == TD_BF16)
            ((uint16_t *)t->data)[i] = td_f32_to_bf16(v);
        else if (dt == TD_I8)
            ((int8_t *)t->data)[i] = (int8_t)(v * 250.0f);
        else
            ((float *)t->data)[i] = v * 0.01f + 0.01f;
    }
    return 0;
}

/* bf16 peak: the best of a few 8192^3 cublasGemmEx runs (f32 accumulation). */
static double bf16_peak(int reps)
{
    const int n = 8192;
    void *a = NULL, *b = NULL, *c = NULL;
    cublasHandle_t h = NULL;
    float one = 1.0f, zero = 0.0f;
    double best = 0;

    if (cudaMalloc(&a, (size_t)n * n * 2) || cudaMalloc(&b, (size_t)n * n * 2) ||
        cudaMalloc(&c, (size_t)n * n * 2) || cublasCreate(&h)) {
        fprintf(stderr, "bench_cuda_gemm: cannot set up the peak GEMM\n");
        best = -1;
        goto out;
    }
    cudaMemset(a, 0x3c, (size_t)n * n * 2);
    cudaMemset(b, 0x3c, (size_t)n * n * 2);
    for (int r = 0; r < reps + 1; r++) {
        double t0 = now(), t;
        if (cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n, b, CUDA_R_16BF, n,
                         &zero, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)) {
            best = -1;
            goto out;
        }
        cudaDeviceSynchronize();
        t = now() - t0;
        if (r > 0 && 2.0 * n * n * (double)n / t > best)   /* run 0 warms up */
            best = 2.0 * n * n * (double)n / t;
    }
out:
    if (h)
        cublasDestroy(h);
    cudaFree(a), cudaFree(b), cudaFree(c);
    return best / 1e12;
}

/* Best time of reps runs of one op (after a warm-up run); -1 on error. */
static double time_op(td_backend *be, int w8, const td_tensor *x, const td_tensor *w, const td_tensor *ws,
                      const td_tensor *bias, td_tensor *y, int reps)
{
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = now(), t;
        int rc = w8 ? be->ops->linear_w8a8(be, x, w, ws, bias, y) : be->ops->linear(be, x, w, bias, y);
        if (rc < 0 || cudaDeviceSynchronize() != cudaSuccess)
            return -1;
        t = now() - t0;
        if (r > 0 && t < best)
            best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    static const shape shapes[] = {
        { "self-attn q/k/v/o (x4)", 32760, 1536, 1536 },
        { "cross-attn q/o (x2)", 32760, 1536, 1536 },
        { "cross-attn k/v on text (x2)", 512, 1536, 1536 },
        { "ffn up", 32760, 1536, 8960 },
        { "ffn down", 32760, 8960, 1536 },
        { "text embedding", 512, 4096, 1536 },
    };
    int device = argc > 1 ? atoi(argv[1]) : 0, reps = argc > 2 ? atoi(argv[2]) : 5;
    td_ctx ctx;
    td_backend *be = NULL;
    double peak;
    int status = 0;

    td_ctx_init(&ctx);
    if (reps < 1 || td_backend_cuda_create(&ctx, device, (size_t)3 << 30, &be) < 0) {
        fprintf(stderr, "bench_cuda_gemm: %s\n", reps < 1 ? "reps must be positive" : ctx.errmsg);
        return reps < 1 ? 2 : 77;
    }
    peak = bf16_peak(reps);
    printf("cuBLAS bf16 peak (8192^3 GemmEx): %.1f TFLOP/s\n", peak);
    printf("%-30s %6s %5s %5s %10s %7s %10s %7s\n", "shape", "M", "K", "N", "bf16 TF/s", "%peak",
           "w8a8 TF/s", "%peak");
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]) && status == 0; i++) {
        const shape *s = &shapes[i];
        size_t mark = be->ops->mark(be);
        td_tensor hx, hw, hq, hs, hb, x, w, q, sc, b, y;
        int64_t ys[2] = { s->m, s->n };
        double flop = 2.0 * s->m * s->k * s->n, tb, t8;

        if (host_rand(&ctx, &hx, TD_BF16, s->m, s->k, 1) || host_rand(&ctx, &hw, TD_BF16, s->n, s->k, 2) ||
            host_rand(&ctx, &hq, TD_I8, s->n, s->k, 3) ||
            host_rand(&ctx, &hs, TD_F32, (s->n + 127) / 128, (s->k + 127) / 128, 4) ||
            host_rand(&ctx, &hb, TD_BF16, 1, s->n, 5) || be->ops->upload(be, &hx, &x) ||
            be->ops->upload(be, &hw, &w) || be->ops->upload(be, &hq, &q) ||
            /* W8A8 scales stay f32: tensor_new + write, not upload (which narrows floats) */
            be->ops->tensor_new(be, &sc, TD_F32, 2, hs.shape) || be->ops->write(be, &sc, &hs) ||
            be->ops->upload(be, &hb, &b) || be->ops->alloc(be, &y, TD_BF16, 2, ys)) {
            fprintf(stderr, "bench_cuda_gemm: %s\n", ctx.errmsg);
            return 1;
        }
        tb = time_op(be, 0, &x, &w, NULL, &b, &y, reps);
        t8 = time_op(be, 1, &x, &q, &sc, &b, &y, reps);
        if (tb < 0 || t8 < 0) {
            fprintf(stderr, "bench_cuda_gemm: %s: %s\n", s->name, ctx.errmsg);
            status = 1;
        } else {
            printf("%-30s %6lld %5lld %5lld %10.1f %6.0f%% %10.1f %6.0f%%\n", s->name, (long long)s->m,
                   (long long)s->k, (long long)s->n, flop / tb / 1e12, 100 * flop / tb / 1e12 / peak,
                   flop / t8 / 1e12, 100 * flop / t8 / 1e12 / peak);
        }
        td_tensor_free(&hx), td_tensor_free(&hw), td_tensor_free(&hq), td_tensor_free(&hs);
        td_tensor_free(&hb);
        be->ops->tensor_free(be, &x), be->ops->tensor_free(be, &w), be->ops->tensor_free(be, &q);
        be->ops->tensor_free(be, &sc), be->ops->tensor_free(be, &b);
        be->ops->reset(be, mark);
    }
    td_backend_destroy(&be);
    return status;
}
