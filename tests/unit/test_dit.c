/*
 * Wan DiT against the committed fixture (tests/data/dit, written by
 * tests/parity/gen_dit_fixtures.py from diffusers' WanTransformer3DModel in
 * f64): the forward pass from the Wan .pth layout, the config read from
 * shapes, and clear errors for a missing tensor, a misshapen tensor, SLA on
 * a checkpoint without proj_l, a bad head count and wrong input shapes; a
 * per-job plan is refused for other sizes and reused without changing the
 * result. Inputs go to the backend with write, results come back with read.
 */
#include <string.h>

#include "check.h"
#include "core/pool.h"
#include "dit/dit.h"
#include "io/npy.h"
#include "io/weights.h"

#define DIR TD_ROOT "/tests/data/dit/"
#define FIXTURE_T 737.5

typedef struct env {
    td_ctx ctx;
    td_backend *be;
} env;

static int load(env *e, const char *path, int heads, td_weights **w, td_dit **dit)
{
    td_dit_opts opts = { .heads = heads };
    td_ctx_clear(&e->ctx);
    int rc = td_weights_open(&e->ctx, path, w);
    CHECK(rc == 0, "open %s: %s", path, e->ctx.errmsg);
    return rc == 0 ? td_dit_load(&e->ctx, e->be, *w, &opts, dit) : rc;
}

/* A backend tensor of host's shape holding host. */
static int to_backend(env *e, const td_tensor *host, td_tensor *dev)
{
    TD_TRY(e->be->ops->tensor_new(e->be, dev, e->be->act, host->ndim, host->shape));
    return e->be->ops->write(e->be, dev, host);
}

/* The fixture's latents, context and reference output: x, c on the backend. */
typedef struct fixture {
    td_tensor x, c, ref;     /* host */
    td_tensor xd, cd, od;    /* backend; od [C_out, F, H, W] */
} fixture;

static int fixture_load(env *e, fixture *f)
{
    int rc = td_npy_read(&e->ctx, DIR "x.npy", &f->x);
    rc = rc ? rc : td_npy_read(&e->ctx, DIR "context.npy", &f->c);
    rc = rc ? rc : td_npy_read(&e->ctx, DIR "out.npy", &f->ref);
    rc = rc ? rc : to_backend(e, &f->x, &f->xd);
    rc = rc ? rc : to_backend(e, &f->c, &f->cd);
    rc = rc ? rc : e->be->ops->tensor_new(e->be, &f->od, e->be->act, 4, f->ref.shape);
    CHECK(rc == 0, "fixture arrays: %s", e->ctx.errmsg);
    return rc;
}

static void fixture_free(env *e, fixture *f)
{
    td_tensor_free(&f->x);
    td_tensor_free(&f->c);
    td_tensor_free(&f->ref);
    e->be->ops->tensor_free(e->be, &f->xd);
    e->be->ops->tensor_free(e->be, &f->cd);
    e->be->ops->tensor_free(e->be, &f->od);
}

/* The forward's output read back into host (f32, the output's shape). */
static int forward_read(env *e, td_dit *dit, td_dit_plan *plan, fixture *f, double t, td_tensor *host)
{
    TD_TRY(td_dit_forward(dit, plan, &f->xd, t, &f->cd, NULL, &f->od));
    return e->be->ops->read(e->be, &f->od, host);
}

static void test_forward(env *e)
{
    td_weights *w = NULL;
    td_dit *dit = NULL;
    fixture f = { 0 };
    td_tensor out = { 0 };
    int rc = load(e, DIR "tiny.pth", 2, &w, &dit);
    CHECK(rc == 0, "load tiny.pth: %s", e->ctx.errmsg);
    if (rc == 0) {
        const td_dit_config *cfg = td_dit_get_config(dit);
        CHECK(cfg->dim == 32 && cfg->layers == 2 && cfg->ffn_dim == 48 && cfg->heads == 2 &&
              cfg->head_dim == 16 && cfg->in_ch == 16 && cfg->out_ch == 16 && cfg->text_dim == 16 &&
              cfg->freq_dim == 16 && !cfg->i2v && !cfg->quant && !cfg->has_proj_l &&
              cfg->patch[0] == 1 && cfg->patch[1] == 2 && cfg->patch[2] == 2, "config from shapes");
        rc = fixture_load(e, &f);
    }
    if (rc == 0)
        rc = td_tensor_new(&e->ctx, &out, TD_F32, 4, f.ref.shape);
    if (rc == 0) {
        td_dit_attn full = { TD_DIT_ATTN_FULL, 0 }, sla = { TD_DIT_ATTN_SLA, 0.5 };
        rc = td_dit_forward(dit, NULL, &f.xd, FIXTURE_T, &f.cd, &full, &f.od);
        CHECK(rc == 0, "forward: %s", e->ctx.errmsg);
        if (rc == 0 && e->be->ops->read(e->be, &f.od, &out) == 0) {
            double err = rel_l2_ff(out.data, f.ref.data, (size_t)td_numel(&f.ref));
            printf("dit forward vs diffusers (f64): rel L2 %.3g\n", err);
            CHECK(err < 1e-5, "dit forward rel L2 %.3g", err);
        }
        td_ctx_clear(&e->ctx);
        rc = td_dit_forward(dit, NULL, &f.xd, FIXTURE_T, &f.cd, &sla, &f.od);
        CHECK(rc == TD_ENOTFOUND && strstr(e->ctx.errmsg, "proj_l"), "sla without proj_l: %s", e->ctx.errmsg);
        td_ctx_clear(&e->ctx);
        rc = td_dit_forward(dit, NULL, &f.cd, FIXTURE_T, &f.cd, &full, &f.od);
        CHECK(rc == TD_ESHAPE && strstr(e->ctx.errmsg, "latents"), "2-D latents: %s", e->ctx.errmsg);
        td_ctx_clear(&e->ctx);
        rc = td_dit_forward(dit, NULL, &f.xd, FIXTURE_T, &f.xd, &full, &f.od);
        CHECK(rc == TD_ESHAPE && strstr(e->ctx.errmsg, "context"), "4-D context: %s", e->ctx.errmsg);
    }
    fixture_free(e, &f);
    td_tensor_free(&out);
    td_dit_free(&dit);
    td_weights_close(&w);
}

/* A plan made for other latents or another context length is refused. */
static void check_plan_sizes(env *e, td_dit *dit, fixture *f)
{
    const int64_t *xs = f->x.shape;
    td_dit_plan *off_grid = NULL;
    int64_t sizes[4][4] = { { xs[1] + 1, xs[2], xs[3], f->c.shape[0] },
                            { xs[1], xs[2] + 2, xs[3], f->c.shape[0] },
                            { xs[1], xs[2], xs[3] + 2, f->c.shape[0] },
                            { xs[1], xs[2], xs[3], f->c.shape[0] + 1 } };
    for (int i = 0; i < 4; i++) {
        td_dit_plan *plan = NULL;
        int rc = td_dit_plan_new(dit, sizes[i][0], sizes[i][1], sizes[i][2], sizes[i][3], &plan);
        CHECK(rc == 0, "plan %d: %s", i, e->ctx.errmsg);
        td_ctx_clear(&e->ctx);
        rc = rc ? rc : td_dit_forward(dit, plan, &f->xd, FIXTURE_T, &f->cd, NULL, &f->od);
        CHECK(rc == TD_ESHAPE && strstr(e->ctx.errmsg, "plan"), "plan %d of another size: rc %d (%s)", i, rc,
              e->ctx.errmsg);
        td_dit_plan_free(&plan);
        CHECK(plan == NULL, "plan freed");
    }
    td_ctx_clear(&e->ctx);
    CHECK(td_dit_plan_new(dit, xs[1], xs[2] + 1, xs[3], f->c.shape[0], &off_grid) == TD_ESHAPE && !off_grid,
          "plan off the patch grid accepted");
}

/* Two forwards (different timesteps) through one plan equal two one-off
 * forwards bit for bit: nothing in the plan leaks from one call to the next. */
static void test_plan(env *e)
{
    static const double ts[2] = { FIXTURE_T, 120.25 };
    td_weights *w = NULL;
    td_dit *dit = NULL;
    td_dit_plan *plan = NULL;
    fixture f = { 0 };
    td_tensor once[2] = { { 0 } }, planned[2] = { { 0 } };
    int rc = load(e, DIR "tiny.pth", 2, &w, &dit);
    rc = rc ? rc : fixture_load(e, &f);
    for (int i = 0; i < 2 && rc == 0; i++) {
        rc = td_tensor_new(&e->ctx, &once[i], TD_F32, 4, f.ref.shape);
        rc = rc ? rc : td_tensor_new(&e->ctx, &planned[i], TD_F32, 4, f.ref.shape);
    }
    rc = rc ? rc : td_dit_plan_new(dit, f.x.shape[1], f.x.shape[2], f.x.shape[3], f.c.shape[0], &plan);
    for (int i = 0; i < 2 && rc == 0; i++)
        rc = forward_read(e, dit, NULL, &f, ts[i], &once[i]);
    for (int i = 0; i < 2 && rc == 0; i++)
        rc = forward_read(e, dit, plan, &f, ts[i], &planned[i]);
    CHECK(rc == 0, "plan forwards: %s", e->ctx.errmsg);
    if (rc == 0) {
        size_t n = td_nbytes(&once[0]);
        CHECK(!memcmp(once[0].data, planned[0].data, n) && !memcmp(once[1].data, planned[1].data, n),
              "forwards through one plan differ from one-off forwards");
        CHECK(memcmp(once[0].data, once[1].data, n), "the timestep changed nothing");
        check_plan_sizes(e, dit, &f);
    }
    td_dit_plan_free(&plan);
    for (int i = 0; i < 2; i++) {
        td_tensor_free(&once[i]);
        td_tensor_free(&planned[i]);
    }
    fixture_free(e, &f);
    td_dit_free(&dit);
    td_weights_close(&w);
}

static void expect_load_error(env *e, const char *path, int heads, int code, const char *msg1, const char *msg2)
{
    td_weights *w = NULL;
    td_dit *dit = NULL;
    int rc = load(e, path, heads, &w, &dit);
    CHECK(rc == code && dit == NULL, "%s: rc %d, expected %d (%s)", path, rc, code, e->ctx.errmsg);
    CHECK(strstr(e->ctx.errmsg, msg1) && strstr(e->ctx.errmsg, msg2), "%s: message '%s' lacks '%s' / '%s'",
          path, e->ctx.errmsg, msg1, msg2);
    td_dit_free(&dit);
    td_weights_close(&w);
}

int main(void)
{
    env e;
    td_ctx_init(&e.ctx);
    e.be = NULL;
    CHECK(td_pool_create(&e.ctx, 2, &e.ctx.pool) == 0, "pool");
    CHECK(td_backend_cpu_create(&e.ctx, 0, &e.be) == 0, "backend: %s", e.ctx.errmsg);
    if (e.be) {
        test_forward(&e);
        test_plan(&e);
        expect_load_error(&e, DIR "missing.safetensors", 2, TD_ENOTFOUND, "missing.safetensors",
                          "blocks.1.self_attn.v.bias");
        expect_load_error(&e, DIR "badshape.safetensors", 2, TD_ESHAPE, "blocks.0.ffn.0.weight", "[32,48], expected");
        /* the default head_dim 128 does not divide dim 32 */
        expect_load_error(&e, DIR "tiny.pth", 0, TD_EINVAL, "dim 32", "heads");
        expect_load_error(&e, DIR "tiny.pth", 3, TD_EINVAL, "dim 32", "3 heads");
    }
    td_backend_destroy(&e.be);
    td_pool_destroy(&e.ctx.pool);
    return check_summary();
}
