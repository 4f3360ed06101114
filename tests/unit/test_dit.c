/*
 * Wan DiT against the committed fixture (tests/data/dit, written by
 * tests/parity/gen_dit_fixtures.py from diffusers' WanTransformer3DModel in
 * f64): the forward pass from the Wan .pth layout, the config read from
 * shapes, and clear errors for a missing tensor, a misshapen tensor, SLA on
 * a checkpoint without proj_l, a bad head count and wrong input shapes.
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
    td_dit_opts opts = { heads };
    td_ctx_clear(&e->ctx);
    int rc = td_weights_open(&e->ctx, path, w);
    CHECK(rc == 0, "open %s: %s", path, e->ctx.errmsg);
    return rc == 0 ? td_dit_load(&e->ctx, *w, &opts, dit) : rc;
}

static void test_forward(env *e)
{
    td_weights *w = NULL;
    td_dit *dit = NULL;
    td_tensor x = { 0 }, c = { 0 }, ref = { 0 }, out = { 0 };
    int rc = load(e, DIR "tiny.pth", 2, &w, &dit);
    CHECK(rc == 0, "load tiny.pth: %s", e->ctx.errmsg);
    if (rc == 0) {
        const td_dit_config *cfg = td_dit_get_config(dit);
        CHECK(cfg->dim == 32 && cfg->layers == 2 && cfg->ffn_dim == 48 && cfg->heads == 2 &&
              cfg->head_dim == 16 && cfg->in_ch == 16 && cfg->out_ch == 16 && cfg->text_dim == 16 &&
              cfg->freq_dim == 16 && !cfg->i2v && !cfg->quant && !cfg->has_proj_l &&
              cfg->patch[0] == 1 && cfg->patch[1] == 2 && cfg->patch[2] == 2, "config from shapes");
        rc = td_npy_read(&e->ctx, DIR "x.npy", &x);
        rc = rc ? rc : td_npy_read(&e->ctx, DIR "context.npy", &c);
        rc = rc ? rc : td_npy_read(&e->ctx, DIR "out.npy", &ref);
        CHECK(rc == 0, "fixture arrays: %s", e->ctx.errmsg);
    }
    if (rc == 0)
        rc = td_tensor_new(&e->ctx, &out, TD_F32, 4, ref.shape);
    if (rc == 0) {
        td_dit_attn full = { TD_DIT_ATTN_FULL, 0 }, sla = { TD_DIT_ATTN_SLA, 0.5 };
        rc = td_dit_forward(dit, e->be, &x, FIXTURE_T, &c, &full, &out);
        CHECK(rc == 0, "forward: %s", e->ctx.errmsg);
        if (rc == 0) {
            double err = rel_l2_ff(out.data, ref.data, (size_t)td_numel(&ref));
            printf("dit forward vs diffusers (f64): rel L2 %.3g\n", err);
            CHECK(err < 1e-5, "dit forward rel L2 %.3g", err);
        }
        td_ctx_clear(&e->ctx);
        rc = td_dit_forward(dit, e->be, &x, FIXTURE_T, &c, &sla, &out);
        CHECK(rc == TD_ENOTFOUND && strstr(e->ctx.errmsg, "proj_l"), "sla without proj_l: %s", e->ctx.errmsg);
        td_ctx_clear(&e->ctx);
        rc = td_dit_forward(dit, e->be, &c, FIXTURE_T, &c, &full, &out);
        CHECK(rc == TD_ESHAPE && strstr(e->ctx.errmsg, "latents"), "2-D latents: %s", e->ctx.errmsg);
        td_ctx_clear(&e->ctx);
        rc = td_dit_forward(dit, e->be, &x, FIXTURE_T, &x, &full, &out);
        CHECK(rc == TD_ESHAPE && strstr(e->ctx.errmsg, "context"), "4-D context: %s", e->ctx.errmsg);
    }
    td_tensor_free(&x);
    td_tensor_free(&c);
    td_tensor_free(&ref);
    td_tensor_free(&out);
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
