/*
 * Per-op times of one full-size Wan2.1-1.3B DiT block on the CUDA backend:
 * 480p x 81 frames (S = 32760 tokens), dim 1536, 12 heads x 128, FFN 8960,
 * 512 text rows already projected to 1536; self-attention once full and
 * once SLA (blocks 128/64, topk 0.1), and the W8A8 linear next to the bf16
 * one. Each op runs once to warm up, then enough times for ~0.3 s (at least
 * once), between device synchronisations; the mean is printed in ms, one
 * line per op, "op ms" (tools/gpu/torch_block.py prints the same names).
 * Random inputs and weights (no zeros: they can run faster than real data).
 * Usage: bench_cuda_block [device]
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/backend.h"

#define S 32760
#define DIM 1536
#define HEADS 12
#define HD 128
#define FFN 8960
#define CTX 512

typedef struct bench {
    td_ctx ctx;
    td_backend *be;
    unsigned seed;
    td_tensor held[64];
    int nheld;
} bench;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A device tensor of dtype dt, written from uniform values in [-amp, amp)
 * (an int8 one from host int8: write converts floats only). */
static td_tensor rand_dev(bench *b, td_dtype dt, int ndim, const int64_t *shape, float amp)
{
    td_tensor h, d = { 0 };
    if (td_tensor_new(&b->ctx, &h, dt == TD_I8 ? TD_I8 : TD_F32, ndim, shape) < 0) {
        fprintf(stderr, "bench_cuda_block: %s\n", b->ctx.errmsg);
        exit(1);
    }
    for (int64_t i = 0; i < td_numel(&h); i++) {
        float v;
        b->seed = b->seed * 1664525u + 1013904223u;
        v = amp * ((float)(b->seed >> 8) / 8388608.0f - 1.0f);
        if (dt == TD_I8)
            ((int8_t *)h.data)[i] = (int8_t)v;
        else
            ((float *)h.data)[i] = v;
    }
    if (b->be->ops->tensor_new(b->be, &d, dt, ndim, shape) < 0 || b->be->ops->write(b->be, &d, &h) < 0) {
        fprintf(stderr, "bench_cuda_block: %s\n", b->ctx.errmsg);
        exit(1);
    }
    td_tensor_free(&h);
    b->held[b->nheld++] = d;
    return d;
}

static td_tensor t2(bench *b, td_dtype dt, int64_t r, int64_t c, float amp)
{
    int64_t s[2] = { r, c };
    return rand_dev(b, dt, 2, s, amp);
}

static td_tensor t1(bench *b, td_dtype dt, int64_t n, float amp)
{
    return rand_dev(b, dt, 1, &n, amp);
}

/* [r, H, D] view of a [r, H*D] tensor. */
static td_tensor heads(const td_tensor *t)
{
    return td_view3(t->data, t->dtype, t->shape[0], HEADS, HD);
}

typedef enum {
    LAYERNORM, MODULATE, LINEAR, LINEAR_GELU, W8A8, RMSNORM, ROPE, ATTENTION, SLA, ADD_GATED, ADD, GELU
} kind;

typedef struct op {
    const char *name;
    kind k;
    const td_tensor *a, *w, *s, *bias, *c;
    td_tensor *y;
} op;

static int run(bench *b, const op *o)
{
    td_backend *be = b->be;
    const td_backend_ops *f = be->ops;
    switch (o->k) {
    case LAYERNORM: return f->layernorm(be, o->a, o->w, o->bias, 1e-6f, o->y);
    case MODULATE: return f->modulate(be, o->a, o->w, o->s, o->y);
    case LINEAR: return f->linear(be, o->a, o->w, o->bias, o->y);
    case LINEAR_GELU: return f->linear_gelu_tanh(be, o->a, o->w, o->bias, o->y);
    case W8A8: return f->linear_w8a8(be, o->a, o->w, o->s, o->bias, o->y);
    case RMSNORM: return f->rmsnorm(be, o->a, o->w, 1e-6f, o->y);
    case ROPE: {
        td_tensor x = heads(o->a), y = heads(o->y);
        return f->rope(be, &x, o->w, o->s, &y);
    }
    case ATTENTION: {
        td_tensor q = heads(o->a), k = heads(o->w), v = heads(o->s), y = heads(o->y);
        return f->attention(be, &q, &k, &v, NULL, 1.0f / sqrtf(HD), 0, &y);
    }
    case SLA: {
        td_tensor q = heads(o->a), k = heads(o->w), v = heads(o->s), y = heads(o->y);
        return f->sla_attention(be, &q, &k, &v, o->c, o->bias, 128, 64, 0.1, &y);
    }
    case ADD_GATED: return f->add_gated(be, o->y, o->a, o->w);
    case ADD: return f->add(be, o->a, o->w, o->y);
    case GELU: return f->gelu_tanh(be, o->a, o->y);
    }
    return -1;
}

/* Mean seconds of one call, or -1 with the error printed. */
static double time_op(bench *b, const op *o)
{
    double t0, t1;
    int reps;
    if (run(b, o) < 0 || cudaDeviceSynchronize() != cudaSuccess)
        return -1;
    t0 = now();
    if (run(b, o) < 0 || cudaDeviceSynchronize() != cudaSuccess)
        return -1;
    t1 = now() - t0;
    reps = t1 > 0.3 ? 0 : (int)(0.3 / (t1 > 1e-6 ? t1 : 1e-6));
    if (reps > 200)
        reps = 200;
    t0 = now();
    for (int i = 0; i < reps; i++)
        if (run(b, o) < 0)
            return -1;
    if (cudaDeviceSynchronize() != cudaSuccess)
        return -1;
    return reps ? (now() - t0) / reps : t1;
}

int main(int argc, char **argv)
{
    bench b = { .seed = 12345 };
    int device = argc > 1 ? atoi(argv[1]) : 0, status = 0;
    double total_full = 0, total_sla = 0;

    td_ctx_init(&b.ctx);
    if (td_backend_cuda_create(&b.ctx, device, (size_t)1 << 30, &b.be) < 0) {
        fprintf(stderr, "bench_cuda_block: %s\n", b.ctx.errmsg);
        return 1;
    }
    {
        int64_t wsd[2] = { (DIM + 127) / 128, (DIM + 127) / 128 };
        td_tensor x = t2(&b, TD_BF16, S, DIM, 1.0f), xn = t2(&b, TD_BF16, S, DIM, 1.0f);
        td_tensor q = t2(&b, TD_BF16, S, DIM, 1.0f), k = t2(&b, TD_BF16, S, DIM, 1.0f);
        td_tensor v = t2(&b, TD_BF16, S, DIM, 1.0f), o = t2(&b, TD_BF16, S, DIM, 1.0f);
        td_tensor ctx = t2(&b, TD_BF16, CTX, DIM, 1.0f), kc = t2(&b, TD_BF16, CTX, DIM, 1.0f);
        td_tensor vc = t2(&b, TD_BF16, CTX, DIM, 1.0f), hid = t2(&b, TD_BF16, S, FFN, 1.0f);
        td_tensor hid2 = t2(&b, TD_BF16, S, FFN, 1.0f);
        td_tensor w = t2(&b, TD_BF16, DIM, DIM, 0.025f), w1 = t2(&b, TD_BF16, FFN, DIM, 0.025f);
        td_tensor w2 = t2(&b, TD_BF16, DIM, FFN, 0.01f), bias = t1(&b, TD_BF16, DIM, 0.1f);
        td_tensor b1 = t1(&b, TD_BF16, FFN, 0.1f), vec = t1(&b, TD_F32, DIM, 0.5f), vec2 = t1(&b, TD_F32, DIM, 0.5f);
        td_tensor cs = t2(&b, TD_F32, S, HD / 2, 1.0f), sn = t2(&b, TD_F32, S, HD / 2, 1.0f);
        td_tensor wq = t2(&b, TD_I8, DIM, DIM, 100.0f), wsc = rand_dev(&b, TD_F32, 2, wsd, 1e-4f);
        td_tensor pw = t2(&b, TD_BF16, HD, HD, 0.09f), pb = t1(&b, TD_BF16, HD, 0.1f);
        /* the block's ops in order; the cross-attention's k/v of the text count once per call */
        op ops[] = {
            { "norm1 (layernorm)", LAYERNORM, &x, NULL, NULL, NULL, NULL, &xn },
            { "modulate", MODULATE, &xn, &vec, &vec2, NULL, NULL, &xn },
            { "q linear", LINEAR, &xn, &w, NULL, &bias, NULL, &q },
            { "q linear w8a8", W8A8, &xn, &wq, &wsc, &bias, NULL, &q },
            { "k linear", LINEAR, &xn, &w, NULL, &bias, NULL, &k },
            { "v linear", LINEAR, &xn, &w, NULL, &bias, NULL, &v },
            { "q rmsnorm", RMSNORM, &q, &vec, NULL, NULL, NULL, &q },
            { "k rmsnorm", RMSNORM, &k, &vec, NULL, NULL, NULL, &k },
            { "q rope", ROPE, &q, &cs, &sn, NULL, NULL, &q },
            { "k rope", ROPE, &k, &cs, &sn, NULL, NULL, &k },
            { "self attention (full)", ATTENTION, &q, &k, &v, NULL, NULL, &o },
            { "self attention (sla 0.1)", SLA, &q, &k, &v, &pb, &pw, &o },
            { "o linear", LINEAR, &o, &w, NULL, &bias, NULL, &xn },
            { "add_gated", ADD_GATED, &xn, &vec, NULL, NULL, NULL, &x },
            { "norm3 (layernorm affine)", LAYERNORM, &x, &vec, NULL, &vec2, NULL, &xn },
            { "cross q linear", LINEAR, &xn, &w, NULL, &bias, NULL, &q },
            { "cross k linear (text)", LINEAR, &ctx, &w, NULL, &bias, NULL, &kc },
            { "cross v linear (text)", LINEAR, &ctx, &w, NULL, &bias, NULL, &vc },
            { "cross q rmsnorm", RMSNORM, &q, &vec, NULL, NULL, NULL, &q },
            { "cross k rmsnorm", RMSNORM, &kc, &vec, NULL, NULL, NULL, &kc },
            { "cross attention", ATTENTION, &q, &kc, &vc, NULL, NULL, &o },
            { "cross o linear", LINEAR, &o, &w, NULL, &bias, NULL, &xn },
            { "cross residual (add)", ADD, &x, &xn, NULL, NULL, NULL, &x },
            { "norm2 (layernorm)", LAYERNORM, &x, NULL, NULL, NULL, NULL, &xn },
            { "ffn modulate", MODULATE, &xn, &vec, &vec2, NULL, NULL, &xn },
            { "ffn up linear", LINEAR, &xn, &w1, NULL, &b1, NULL, &hid },
            { "ffn gelu_tanh", GELU, &hid, NULL, NULL, NULL, NULL, &hid2 },
            { "ffn up linear+gelu (fused)", LINEAR_GELU, &xn, &w1, NULL, &b1, NULL, &hid },
            { "ffn down linear", LINEAR, &hid2, &w2, NULL, &bias, NULL, &xn },
            { "ffn add_gated", ADD_GATED, &xn, &vec, NULL, NULL, NULL, &x },
        };
        printf("# Wan2.1-1.3B block, S=%d dim=%d heads=%dx%d ffn=%d text=%d, cuda bf16\n", S, DIM, HEADS, HD,
               FFN, CTX);
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
            double t = time_op(&b, &ops[i]);
            if (t < 0) {
                printf("%-28s FAILED %s\n", ops[i].name, b.ctx.errmsg);
                td_ctx_clear(&b.ctx);
                status = 1;
                continue;
            }
            printf("%-28s %10.3f ms\n", ops[i].name, t * 1e3);
            fflush(stdout);
            /* the alternatives (SLA, W8A8, the fused FFN up) stay out of the totals */
            if (ops[i].k != SLA && ops[i].k != W8A8 && ops[i].k != LINEAR_GELU)
                total_full += t;
            if ((ops[i].k != ATTENTION || ops[i].a != &q || ops[i].w != &k) && ops[i].k != LINEAR_GELU)
                total_sla += ops[i].k == W8A8 ? 0 : t;
        }
        printf("%-28s %10.3f ms\n", "block total (full attention)", total_full * 1e3);
        printf("%-28s %10.3f ms\n", "block total (sla)", total_sla * 1e3);
    }
    while (b.nheld > 0)
        b.be->ops->tensor_free(b.be, &b.held[--b.nheld]);
    td_backend_destroy(&b.be);
    return status;
}
