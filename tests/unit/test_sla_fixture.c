/*
 * SLA op against committed numbers (tests/data/sla, written by
 * tests/parity/gen_sla_sample_fixtures.py): the f64 PyTorch oracle for three
 * block/topk settings and TurboDiffusion's own Triton kernel (interpreted,
 * f32) for one.
 */
#include <string.h>

#include "check.h"
#include "backend/backend.h"
#include "io/npy.h"

#define DATA TD_ROOT "/tests/data/sla/"

static int load(td_ctx *ctx, const char *name, td_tensor *t)
{
    int rc = td_npy_read(ctx, name, t);
    CHECK(rc == 0, "%s: %s", name, ctx->errmsg);
    return rc;
}

int main(void)
{
    static const struct { int bq, bk; double topk; const char *ref; } cases[] = {
        { 128, 64, 0.1, DATA "out_128x64_topk0.1.npy" },
        { 128, 64, 0.5, DATA "out_128x64_topk0.5.npy" },
        { 64, 128, 0.25, DATA "out_64x128_topk0.25.npy" },
        { 128, 64, 0.5, DATA "turbodiffusion_128x64_topk0.5.npy" },
    };
    td_ctx ctx;
    td_backend *be = NULL;
    td_tensor q = { 0 }, k = { 0 }, v = { 0 }, w = { 0 }, b = { 0 }, out = { 0 };

    td_ctx_init(&ctx);
    if (load(&ctx, DATA "q.npy", &q) || load(&ctx, DATA "k.npy", &k) || load(&ctx, DATA "v.npy", &v) ||
        load(&ctx, DATA "w.npy", &w) || load(&ctx, DATA "b.npy", &b) ||
        td_tensor_new(&ctx, &out, TD_F32, q.ndim, q.shape) || td_backend_cpu_create(&ctx, 0, &be)) {
        CHECK(0, "setup: %s", ctx.errmsg);
        goto done;
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        td_tensor ref = { 0 };
        if (load(&ctx, cases[i].ref, &ref))
            continue;
        int rc = be->ops->sla_attention(be, &q, &k, &v, &w, &b, cases[i].bq, cases[i].bk,
                                      cases[i].topk, &out);
        CHECK(rc == 0, "%s: %s", cases[i].ref, ctx.errmsg);
        CHECK(td_numel(&ref) == td_numel(&out), "%s: size", cases[i].ref);
        if (rc == 0 && td_numel(&ref) == td_numel(&out)) {
            double e = rel_l2_ff(out.data, ref.data, (size_t)td_numel(&out));
            CHECK(e < 1e-5, "%s: rel L2 %.3g", cases[i].ref, e);
        }
        td_tensor_free(&ref);
    }
done:
    td_backend_destroy(&be);
    td_tensor_free(&q);
    td_tensor_free(&k);
    td_tensor_free(&v);
    td_tensor_free(&w);
    td_tensor_free(&b);
    td_tensor_free(&out);
    return check_summary();
}
