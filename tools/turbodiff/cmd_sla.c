/*
 * turbodiff sla-attention: run the backend's SLA op on .npy inputs, the
 * debug entry the parity tier (tests/parity/test_sla.py) drives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "commands.h"
#include "core/pool.h"
#include "io/npy.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: turbodiff sla-attention --q Q.npy --k K.npy --v V.npy --proj-w W.npy\n"
               "         [--proj-b B.npy] [--blk-q 128] [--blk-k 64] [--topk 0.1]\n"
               "         [--threads N] --out O.npy\n"
               "  TurboDiffusion sparse-linear attention of q, k, v [S, heads, head_dim]\n"
               "  with proj_l weight [head_dim, head_dim] and bias [head_dim]; writes\n"
               "  out [S, heads, head_dim] as f32. Block sizes 64 or 128, topk in (0, 1].\n");
}

typedef struct sla_args {
    const char *q, *k, *v, *w, *b, *out;
    int blk_q, blk_k, threads;
    double topk;
} sla_args;

static int parse(int argc, char **argv, sla_args *a)
{
    a->blk_q = 128;
    a->blk_k = 64;
    a->topk = 0.1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        const char **dst = !strcmp(o, "--q") ? &a->q : !strcmp(o, "--k") ? &a->k
                         : !strcmp(o, "--v") ? &a->v : !strcmp(o, "--proj-w") ? &a->w
                         : !strcmp(o, "--proj-b") ? &a->b : !strcmp(o, "--out") ? &a->out : NULL;
        char *end = NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!val) {
            fprintf(stderr, "turbodiff sla-attention: '%s' needs a value or is unknown\n", o);
            return 2;
        }
        i++;
        if (dst) {
            *dst = val;
            continue;
        }
        if (!strcmp(o, "--topk"))
            a->topk = strtod(val, &end);
        else if (!strcmp(o, "--blk-q"))
            a->blk_q = (int)strtol(val, &end, 10);
        else if (!strcmp(o, "--blk-k"))
            a->blk_k = (int)strtol(val, &end, 10);
        else if (!strcmp(o, "--threads"))
            a->threads = (int)strtol(val, &end, 10);
        else {
            fprintf(stderr, "turbodiff sla-attention: unknown option '%s'\n", o);
            return 2;
        }
        if (end == val || *end) {
            fprintf(stderr, "turbodiff sla-attention: %s '%s' is not a number\n", o, val);
            return 2;
        }
    }
    if (!a->q || !a->k || !a->v || !a->w || !a->out) {
        fprintf(stderr, "turbodiff sla-attention: --q, --k, --v, --proj-w and --out are required\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

int cmd_sla_attention(int argc, char **argv)
{
    sla_args a = { 0 };
    td_ctx ctx;
    td_pool *pool = NULL;
    td_backend *be = NULL;
    td_tensor q = { 0 }, k = { 0 }, v = { 0 }, w = { 0 }, b = { 0 }, out = { 0 };
    int rc = parse(argc, argv, &a);

    if (rc)
        return rc == 1 ? 0 : rc;
    td_ctx_init(&ctx);
    if ((rc = td_pool_create(&ctx, a.threads, &pool)) < 0)
        goto done;
    ctx.pool = pool;
    if ((rc = td_npy_read(&ctx, a.q, &q)) < 0 || (rc = td_npy_read(&ctx, a.k, &k)) < 0 ||
        (rc = td_npy_read(&ctx, a.v, &v)) < 0 || (rc = td_npy_read(&ctx, a.w, &w)) < 0 ||
        (a.b && (rc = td_npy_read(&ctx, a.b, &b)) < 0))
        goto done;
    if ((rc = td_tensor_new(&ctx, &out, TD_F32, q.ndim, q.shape)) < 0)
        goto done;
    if ((rc = td_backend_cpu_create(&ctx, 0, &be)) < 0)
        goto done;
    if ((rc = be->ops->sla_attention(be, &q, &k, &v, &w, a.b ? &b : NULL, a.blk_q, a.blk_k,
                                     a.topk, &out)) < 0)
        goto done;
    rc = td_npy_write(&ctx, a.out, &out);
done:
    if (rc < 0)
        fprintf(stderr, "turbodiff sla-attention: %s\n", ctx.errmsg);
    td_backend_destroy(&be);
    td_tensor_free(&q);
    td_tensor_free(&k);
    td_tensor_free(&v);
    td_tensor_free(&w);
    td_tensor_free(&b);
    td_tensor_free(&out);
    td_pool_destroy(&pool);
    return rc < 0 ? 1 : 0;
}
