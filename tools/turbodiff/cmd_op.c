/*
 * turbodiff op: run one CPU backend op on .npy inputs, for the parity tier
 * (tests/parity/test_ops_torch.py checks each op against torch.nn.functional).
 *
 *   turbodiff op NAME [OPTIONS] INPUT.npy... OUT.npy
 *
 * Inputs are in the op's argument order (see backend.h); "-" stands for an
 * optional input left out (NULL). matmul takes a, b and optionally y's
 * starting values (zeros when left out). Options: --eps F, --scale F,
 * --kv-len N, --stride T,H,W, --pad FRONT,BACK,H,W, --factor FH,FW,
 * --alpha F, --beta F, --trans-b 0|1, and --wdtype f32|bf16|f16, which
 * narrows the weight inputs (all but the first) before the call, so
 * bf16/f16 weight paths can be driven from f32 .npy files. --repeat N runs
 * the op N times and prints the best wall time, the op alone without the
 * file I/O around it (bench/conv3d_vs_torch.py).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "commands.h"
#include "core/clock.h"
#include "core/pool.h"
#include "io/npy.h"

#define OP_MAX_IN 4

typedef struct {
    const char *name;
    int nin;          /* inputs, including optional ones */
    unsigned opt;     /* bit i: input i may be "-" */
} op_desc;

static const op_desc ops[] = {
    { "linear", 3, 4 },          { "layernorm", 3, 6 },   { "rmsnorm", 2, 2 },
    { "channel_rmsnorm", 3, 4 }, { "gelu_tanh", 1, 0 },   { "silu", 1, 0 },
    { "softmax", 1, 0 },         { "add", 2, 0 },         { "mul", 2, 0 },
    { "modulate", 3, 0 },        { "add_gated", 3, 0 },   { "rope", 3, 0 },
    { "attention", 4, 8 },       { "conv3d", 3, 4 },      { "upsample_nearest", 1, 0 },
    { "matmul", 3, 4 },          { NULL, 0, 0 },
};

typedef struct {
    float eps, scale;
    long long kv_len;
    int stride[3], pad[4], factor[2];
    td_dtype wdtype;
    float alpha, beta;
    int trans_b;
    int repeat;        /* > 0: run that many times, print the best wall time */
} op_opts;

static void usage(FILE *f)
{
    fprintf(f, "usage: turbodiff op NAME [OPTIONS] INPUT.npy... OUT.npy\n"
               "  Runs one CPU backend op (debug and parity tests). NAME is one of:\n  ");
    for (const op_desc *d = ops; d->name; d++)
        fprintf(f, " %s", d->name);
    fprintf(f, "\n  options: --eps F --scale F --kv-len N --stride T,H,W --pad FRONT,BACK,H,W\n"
               "           --factor FH,FW --alpha F --beta F --trans-b 0|1 --wdtype f32|bf16|f16\n"
               "           --repeat N (run N times, print the best wall time: the op without file I/O)\n"
               "  '-' stands for an optional input that is left out.\n");
}

static int parse_ints(const char *s, int *v, int n)
{
    for (int i = 0; i < n; i++) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < -1000000 || x > 1000000 || (i < n - 1 ? *end != ',' : *end != '\0'))
            return -1;
        v[i] = (int)x;
        s = end + 1;
    }
    return 0;
}

static int parse_opt(const char *key, const char *val, op_opts *o)
{
    char *end = NULL;
    if (!strcmp(key, "--eps"))
        o->eps = strtof(val, &end);
    else if (!strcmp(key, "--scale"))
        o->scale = strtof(val, &end);
    else if (!strcmp(key, "--kv-len"))
        o->kv_len = strtoll(val, &end, 10);
    else if (!strcmp(key, "--alpha"))
        o->alpha = strtof(val, &end);
    else if (!strcmp(key, "--beta"))
        o->beta = strtof(val, &end);
    else if (!strcmp(key, "--trans-b"))
        return parse_ints(val, &o->trans_b, 1) < 0 || (o->trans_b != 0 && o->trans_b != 1) ? -1 : 0;
    else if (!strcmp(key, "--repeat"))
        return parse_ints(val, &o->repeat, 1) < 0 || o->repeat < 1 ? -1 : 0;
    else if (!strcmp(key, "--stride"))
        return parse_ints(val, o->stride, 3);
    else if (!strcmp(key, "--pad"))
        return parse_ints(val, o->pad, 4);
    else if (!strcmp(key, "--factor"))
        return parse_ints(val, o->factor, 2);
    else if (!strcmp(key, "--wdtype")) {
        if (!strcmp(val, "f32"))
            o->wdtype = TD_F32;
        else if (!strcmp(val, "bf16"))
            o->wdtype = TD_BF16;
        else if (!strcmp(val, "f16"))
            o->wdtype = TD_F16;
        else
            return -1;
        return 0;
    } else
        return -1;
    return end && *end == '\0' && end != val ? 0 : -1;
}

/* The output shape the op will fill, from its inputs; -1 if they cannot fit
 * (the op itself then reports the mismatch precisely). */
static int out_shape(const char *name, td_tensor *in, const op_opts *o, td_tensor *out_like)
{
    *out_like = in[0];
    if (!strcmp(name, "linear")) {
        if (in[1].ndim != 2 || in[0].ndim < 1)
            return -1;
        out_like->shape[in[0].ndim - 1] = in[1].shape[0];
    } else if (!strcmp(name, "matmul")) {
        int nb = in[1].ndim;
        if (in[0].ndim < 2 || nb < 2)
            return -1;
        out_like->shape[in[0].ndim - 1] = in[1].shape[o->trans_b ? nb - 2 : nb - 1];
    } else if (!strcmp(name, "attention")) {
        if (in[2].ndim != 3 || in[0].ndim != 3)
            return -1;
        out_like->shape[2] = in[2].shape[2];
    } else if (!strcmp(name, "conv3d")) {
        const int64_t *x = in[0].shape, *w = in[1].shape;
        int64_t pads[3] = { o->pad[0] + o->pad[1], 2 * (int64_t)o->pad[2], 2 * (int64_t)o->pad[3] };
        if (in[0].ndim != 4 || in[1].ndim != 5)
            return -1;
        out_like->shape[0] = w[0];
        for (int i = 0; i < 3; i++) {
            if (o->stride[i] < 1 || x[i + 1] + pads[i] < w[i + 2])
                return -1;
            out_like->shape[i + 1] = (x[i + 1] + pads[i] - w[i + 2]) / o->stride[i] + 1;
        }
    } else if (!strcmp(name, "upsample_nearest")) {
        int nd = in[0].ndim;
        if (nd < 2 || o->factor[0] < 1 || o->factor[1] < 1)
            return -1;
        out_like->shape[nd - 2] *= o->factor[0];
        out_like->shape[nd - 1] *= o->factor[1];
    }
    return 0;
}

static int run(td_backend *be, const char *name, td_tensor *in, int *has, const op_opts *o, td_tensor *y)
{
    const td_backend_ops *f = be->ops;
    td_tensor *opt1 = has[1] ? &in[1] : NULL, *opt2 = has[2] ? &in[2] : NULL, *opt3 = has[3] ? &in[3] : NULL;
    td_conv3d_params cp = { { o->stride[0], o->stride[1], o->stride[2] }, o->pad[0], o->pad[1], o->pad[2], o->pad[3] };

    if (!strcmp(name, "linear")) return f->linear(be, &in[0], &in[1], opt2, y);
    if (!strcmp(name, "layernorm")) return f->layernorm(be, &in[0], opt1, opt2, o->eps, y);
    if (!strcmp(name, "rmsnorm")) return f->rmsnorm(be, &in[0], opt1, o->eps, y);
    if (!strcmp(name, "channel_rmsnorm")) return f->channel_rmsnorm(be, &in[0], &in[1], opt2, y);
    if (!strcmp(name, "gelu_tanh")) return f->gelu_tanh(be, &in[0], y);
    if (!strcmp(name, "silu")) return f->silu(be, &in[0], y);
    if (!strcmp(name, "softmax")) return f->softmax(be, &in[0], y);
    if (!strcmp(name, "add")) return f->add(be, &in[0], &in[1], y);
    if (!strcmp(name, "mul")) return f->mul(be, &in[0], &in[1], y);
    if (!strcmp(name, "modulate")) return f->modulate(be, &in[0], &in[1], &in[2], y);
    if (!strcmp(name, "add_gated")) {
        TD_TRY(td_tensor_copy(be->ctx, y, &in[0]));
        return f->add_gated(be, y, &in[1], &in[2]);
    }
    if (!strcmp(name, "rope")) return f->rope(be, &in[0], &in[1], &in[2], y);
    if (!strcmp(name, "attention")) return f->attention(be, &in[0], &in[1], &in[2], opt3, o->scale, o->kv_len, y);
    if (!strcmp(name, "conv3d")) return f->conv3d(be, &in[0], &in[1], opt2, &cp, y);
    if (!strcmp(name, "matmul")) {
        if (opt2)
            TD_TRY(td_tensor_copy(be->ctx, y, opt2));
        return f->matmul(be, &in[0], &in[1], o->trans_b, o->alpha, o->beta, y);
    }
    return f->upsample_nearest(be, &in[0], o->factor[0], o->factor[1], y);
}

int cmd_op(int argc, char **argv)
{
    op_opts o = { 1e-6f, 1.0f, 0, { 1, 1, 1 }, { 0, 0, 0, 0 }, { 2, 2 }, TD_F32, 1.0f, 0.0f, 0, 0 };
    const char *files[OP_MAX_IN + 1];
    int nfiles = 0, has[OP_MAX_IN] = { 0 }, rc = 1;
    const op_desc *d = NULL;
    td_tensor in[OP_MAX_IN], like, y = { 0 };
    td_backend *be = NULL;
    td_ctx ctx;
    double best = INFINITY;

    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2)
        for (d = ops; d->name && strcmp(d->name, argv[1]); d++)
            ;
    if (!d || !d->name) {
        fprintf(stderr, "turbodiff op: %s\n", argc >= 2 ? "unknown op" : "missing op name");
        usage(stderr);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] == '-') {
            if (i + 1 >= argc || parse_opt(argv[i], argv[i + 1], &o) < 0) {
                fprintf(stderr, "turbodiff op: bad option %s %s\n", argv[i], i + 1 < argc ? argv[i + 1] : "");
                return 2;
            }
            i++;
        } else if (nfiles <= OP_MAX_IN) {
            files[nfiles++] = argv[i];
        } else {
            fprintf(stderr, "turbodiff op: too many files\n");
            return 2;
        }
    }
    if (nfiles != d->nin + 1) {
        fprintf(stderr, "turbodiff op: %s takes %d inputs and one output, got %d files\n", d->name, d->nin, nfiles);
        return 2;
    }
    memset(in, 0, sizeof(in));
    td_ctx_init(&ctx);
    if (td_pool_create(&ctx, 0, &ctx.pool) < 0 || td_backend_cpu_create(&ctx, 0, &be) < 0)
        goto fail;
    for (int i = 0; i < d->nin; i++) {
        if (!strcmp(files[i], "-")) {
            if (!(d->opt >> i & 1)) {
                fprintf(stderr, "turbodiff op: input %d of %s is not optional\n", i + 1, d->name);
                goto done;
            }
            continue;
        }
        if (td_npy_read(&ctx, files[i], &in[i]) < 0)
            goto fail;
        has[i] = 1;
        if (i > 0 && o.wdtype != TD_F32 && in[i].dtype == TD_F32) {
            td_tensor n;
            if (td_tensor_new(&ctx, &n, o.wdtype, in[i].ndim, in[i].shape) < 0)
                goto fail;
            td_from_f32(o.wdtype, in[i].data, n.data, (size_t)td_numel(&in[i]));
            td_tensor_free(&in[i]);
            in[i] = n;
        }
    }
    if (out_shape(d->name, in, &o, &like) < 0) {
        fprintf(stderr, "turbodiff op: the inputs of %s do not fit together\n", d->name);
        goto done;
    }
    if (td_tensor_new(&ctx, &y, TD_F32, like.ndim, like.shape) < 0)
        goto fail;
    for (int r = 0; r < (o.repeat ? o.repeat : 1); r++) {
        double t0 = td_now();
        if (run(be, d->name, in, has, &o, &y) < 0)
            goto fail;
        best = fmin(best, td_now() - t0);
    }
    if (o.repeat)
        fprintf(stderr, "turbodiff op: %s best of %d: %.4f s\n", d->name, o.repeat, best);
    if (td_npy_write(&ctx, files[d->nin], &y) < 0)
        goto fail;
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "turbodiff op: %s\n", ctx.errmsg);
done:
    for (int i = 0; i < OP_MAX_IN; i++)
        td_tensor_free(&in[i]);
    td_tensor_free(&y);
    td_backend_destroy(&be);
    td_pool_destroy(&ctx.pool);
    return rc;
}
