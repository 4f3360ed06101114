/*
 * CPU results do not depend on the number of threads (DESIGN.md: "work is
 * split so that every sum is taken in the same order"), since people diff
 * renders across machines. The whole pipeline on the committed tiny model
 * set, as float frames, with 1, 2, 3 and 5 threads; then, op by op, the ops
 * whose sums were once split by the thread count (the sgemm-based ones) and
 * the tiled attention ops, on shapes with ragged tiles and a long K.
 */
#include <stdlib.h>
#include <string.h>

#include "ops_common.h"
#include "turbodiff.h"

static const int thread_counts[] = { 1, 2, 3, 5 };
#define NCOUNTS ((int)(sizeof(thread_counts) / sizeof(thread_counts[0])))

typedef struct clip {
    float *data;
    size_t floats, used;
} clip;

static int keep_frame(void *opaque, const td_frame *f)
{
    clip *c = opaque;
    size_t n = (size_t)f->width * f->height * 3;
    if (c->used + n > c->floats)
        return 1;
    memcpy(c->data + c->used, f->data, n * sizeof(float));
    c->used += n;
    return 0;
}

/* One clip of the tiny model set (its native 64x32 x 5 frames) on a fresh
 * engine with this many threads; the engine is released before the next
 * count opens its own. */
static int run_pipeline(int threads, clip *c)
{
    td_engine_config cfg;
    td_engine *eng = NULL;
    td_error err = { 0 };
    td_job job;
    int rc;

    td_engine_config_default(&cfg);
    cfg.model_dir = TD_ROOT "/tests/data/pipeline";
    cfg.threads = threads;
    cfg.device = "cpu";
    if ((rc = td_engine_open(&cfg, &eng, &err)) < 0) {
        fprintf(stderr, "open: %s\n", err.msg);
        return rc;
    }
    td_job_default(&job);
    job.prompt = "a red circle moves right on a blue background";
    job.width = 64;
    job.height = 32;
    job.frames = 5;
    job.steps = 2;
    job.seed = 7;
    job.frame_format = TD_FRAME_RGBF32;
    job.on_frame = keep_frame;
    job.opaque = c;
    job.error = &err;
    c->used = 0;
    if ((rc = td_job_run(eng, &job)) < 0)
        fprintf(stderr, "job: %s\n", err.msg);
    td_engine_release(&eng);
    return rc;
}

static void check_pipeline(void)
{
    clip ref = { 0 }, got = { 0 };
    ref.floats = got.floats = (size_t)64 * 32 * 3 * 5;
    ref.data = malloc(ref.floats * sizeof(float));
    got.data = malloc(got.floats * sizeof(float));
    if (!ref.data || !got.data || run_pipeline(thread_counts[0], &ref) < 0) {
        CHECK(0, "the 1-thread pipeline run failed");
        goto out;
    }
    CHECK(ref.used == ref.floats, "5 frames of 64x32: %zu floats", ref.used);
    for (int i = 1; i < NCOUNTS; i++) {
        CHECK(run_pipeline(thread_counts[i], &got) == 0 && got.used == ref.used,
              "pipeline run with %d threads", thread_counts[i]);
        CHECK(!memcmp(got.data, ref.data, ref.used * sizeof(float)),
              "frames with %d threads differ from 1 thread", thread_counts[i]);
    }
out:
    free(ref.data);
    free(got.data);
}

/* --- op by op ------------------------------------------------------------ */

typedef struct op_case {
    const char *name;
    /* runs the op on be, writing its result to out */
    int (*run)(td_backend *be, const struct op_case *c, td_tensor *out);
    td_tensor in[5];
    td_conv3d_params conv;
    int trans_a, trans_b;
    int64_t m, n, k;
} op_case;

static int run_linear(td_backend *be, const op_case *c, td_tensor *out)
{
    return be->ops->linear(be, &c->in[0], &c->in[1], &c->in[2], out);
}

static int run_matmul(td_backend *be, const op_case *c, td_tensor *out)
{
    /* 0.75 a op(b) + 0.5 y, y preloaded into out */
    memcpy(out->data, c->in[2].data, td_nbytes(out));
    return be->ops->matmul(be, &c->in[0], &c->in[1], c->trans_b, 0.75f, 0.5f, out);
}

static int run_conv3d(td_backend *be, const op_case *c, td_tensor *out)
{
    return be->ops->conv3d(be, &c->in[0], &c->in[1], &c->in[2], &c->conv, out);
}

static int run_w8a8(td_backend *be, const op_case *c, td_tensor *out)
{
    return be->ops->linear_w8a8(be, &c->in[0], &c->in[1], &c->in[2], NULL, out);
}

static int run_attention(td_backend *be, const op_case *c, td_tensor *out)
{
    return be->ops->attention(be, &c->in[0], &c->in[1], &c->in[2], NULL, 0.125f, 0, out);
}

static int run_sla(td_backend *be, const op_case *c, td_tensor *out)
{
    return be->ops->sla_attention(be, &c->in[0], &c->in[1], &c->in[2], &c->in[3], &c->in[4],
                                  (int)c->m, (int)c->n, 0.25, out);
}

/* The op with every thread count gives the bits of the 1-thread run. */
static void check_op(ops_env env[NCOUNTS], const op_case *c, int ndim, const int64_t *shape)
{
    td_tensor ref = zero_tensor(&env[0], TD_F32, ndim, shape);
    td_tensor got = zero_tensor(&env[0], TD_F32, ndim, shape);
    CHECK_OK(&env[0], c->run(env[0].be, c, &ref));
    for (int i = 1; i < NCOUNTS; i++) {
        CHECK_OK(&env[i], c->run(env[i].be, c, &got));
        CHECK(!memcmp(got.data, ref.data, sizeof(float) * (size_t)td_numel(&ref)),
              "%s with %d threads differs from 1 thread (rel %.3g)", c->name, thread_counts[i],
              rel_l2_ff(got.data, ref.data, (size_t)td_numel(&ref)));
    }
    td_tensor_free(&ref);
    td_tensor_free(&got);
}

static int env_init(ops_env *e, int threads)
{
    td_ctx_init(&e->ctx);
    if (td_pool_create(&e->ctx, threads, &e->ctx.pool) < 0 ||
        td_backend_cpu_create(&e->ctx, (size_t)16 << 20, &e->be) < 0) {
        fprintf(stderr, "setup failed: %s\n", e->ctx.errmsg);
        return -1;
    }
    return 0;
}

static void check_ops(test_rng *r)
{
    ops_env env[NCOUNTS];
    for (int i = 0; i < NCOUNTS; i++)
        if (env_init(&env[i], thread_counts[i]) < 0)
            exit(1);
    ops_env *e = &env[0];

    /* Linear, f32 and bf16 weights: ragged tiles in M and N, and a long K
     * (OpenBLAS's own threading once split such a product by its count). */
    {
        static const int64_t shapes[][3] = { { 17, 33, 9000 }, { 300, 700, 260 }, { 1, 1100, 640 } };
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            int64_t xs[2] = { m, k }, ws[2] = { n, k }, bs[1] = { n }, ys[2] = { m, n };
            op_case c = { .name = "linear f32", .run = run_linear };
            c.in[0] = rand_tensor(e, r, 2, xs, 1.0f);
            c.in[1] = rand_tensor(e, r, 2, ws, 1.0f);
            c.in[2] = rand_tensor(e, r, 1, bs, 1.0f);
            check_op(env, &c, 2, ys);
            td_tensor wb = narrowed(e, &c.in[1], TD_BF16);
            td_tensor_free(&c.in[1]);
            c.in[1] = wb;
            c.name = "linear bf16";
            check_op(env, &c, 2, ys);
            for (int i = 0; i < 3; i++)
                td_tensor_free(&c.in[i]);
        }
    }

    /* The batched matmul: both layouts of b, f32 and bf16 b, b per batch
     * and shared, rows enough to be cut into tiles. */
    for (int t = 0; t < 8; t++) {
        op_case c = { .name = "matmul", .run = run_matmul, .trans_b = t & 1, .m = 1100, .n = 530,
                      .k = 700 };
        int64_t nb = t & 4 ? 1 : 2;
        int64_t as[3] = { 2, c.m, c.k }, ys[3] = { 2, c.m, c.n };
        int64_t bs[3] = { nb, c.trans_b ? c.n : c.k, c.trans_b ? c.k : c.n };
        c.in[0] = rand_tensor(e, r, 3, as, 1.0f);
        c.in[1] = rand_tensor(e, r, 3, bs, 1.0f);
        c.in[2] = rand_tensor(e, r, 3, ys, 1.0f);
        if (t & 2) {
            td_tensor bb = narrowed(e, &c.in[1], TD_BF16);
            td_tensor_free(&c.in[1]);
            c.in[1] = bb;
            c.name = "matmul bf16 b";
        }
        check_op(env, &c, 3, ys);
        for (int i = 0; i < 3; i++)
            td_tensor_free(&c.in[i]);
    }

    /* conv3d as the VAE runs it (causal in time, 3x3x3), f32 and bf16. */
    {
        int64_t xs[4] = { 40, 3, 24, 40 }, ws[5] = { 300, 40, 3, 3, 3 }, bs[1] = { 300 };
        int64_t ys[4] = { 300, 3, 24, 40 };
        op_case c = { .name = "conv3d f32", .run = run_conv3d,
                      .conv = { { 1, 1, 1 }, 2, 0, 1, 1 } };
        c.in[0] = rand_tensor(e, r, 4, xs, 1.0f);
        c.in[1] = rand_tensor(e, r, 5, ws, 0.2f);
        c.in[2] = rand_tensor(e, r, 1, bs, 1.0f);
        check_op(env, &c, 4, ys);
        td_tensor wb = narrowed(e, &c.in[1], TD_BF16);
        td_tensor_free(&c.in[1]);
        c.in[1] = wb;
        c.name = "conv3d bf16";
        check_op(env, &c, 4, ys);
        for (int i = 0; i < 3; i++)
            td_tensor_free(&c.in[i]);
    }

    /* W8A8 and attention split fixed tiles already: kept so they stay so. */
    {
        int64_t xs[2] = { 300, 384 }, ws[2] = { 260, 384 }, ss[2] = { 3, 3 }, ys[2] = { 300, 260 };
        op_case c = { .name = "linear_w8a8", .run = run_w8a8 };
        c.in[0] = rand_tensor(e, r, 2, xs, 1.0f);
        c.in[1] = zero_tensor(e, TD_I8, 2, ws);
        for (int64_t i = 0; i < td_numel(&c.in[1]); i++)
            ((int8_t *)c.in[1].data)[i] = (int8_t)(test_next(r) & 0xff);
        c.in[2] = rand_tensor(e, r, 2, ss, 0.01f);
        check_op(env, &c, 2, ys);
        for (int i = 0; i < 3; i++)
            td_tensor_free(&c.in[i]);
    }
    {
        int64_t qs[3] = { 700, 3, 64 };
        op_case c = { .name = "attention", .run = run_attention };
        for (int i = 0; i < 3; i++)
            c.in[i] = rand_tensor(e, r, 3, qs, 1.0f);
        check_op(env, &c, 3, qs);
        for (int i = 0; i < 3; i++)
            td_tensor_free(&c.in[i]);
    }
    /* SLA on attention's tiles, both block shapes: (head, query block)
     * items split over the threads, ragged last blocks. */
    {
        int64_t qs[3] = { 700, 3, 64 }, ws[2] = { 64, 64 }, bs[1] = { 64 };
        op_case c = { .name = "sla_attention", .run = run_sla };
        for (int i = 0; i < 3; i++)
            c.in[i] = rand_tensor(e, r, 3, qs, 1.0f);
        c.in[3] = rand_tensor(e, r, 2, ws, 0.2f);
        c.in[4] = rand_tensor(e, r, 1, bs, 0.2f);
        for (int b = 0; b < 2; b++) {
            c.m = b ? 64 : 128;
            c.n = b ? 128 : 64;
            check_op(env, &c, 3, qs);
        }
        for (int i = 0; i < 5; i++)
            td_tensor_free(&c.in[i]);
    }
    for (int i = 0; i < NCOUNTS; i++)
        ops_env_free(&env[i]);
}

int main(void)
{
    test_rng r = test_rng_seeded();
    check_pipeline();
    check_ops(&r);
    return check_summary();
}
