/* The CPU backend without a thread pool (ctx->pool NULL: everything on the
 * caller, OpenBLAS at one thread) must give the same numbers as with one.
 * The pooled path is checked against double loops in the other op tests;
 * this checks the serial path against it on the ops that split work. */
#include "ops_common.h"

static double cmp(const td_tensor *a, const td_tensor *b)
{
    return rel_l2_ff(a->data, b->data, (size_t)td_numel(a));
}

int main(void)
{
    test_rng r = test_rng_seeded();
    ops_env pe;
    td_ctx sctx;
    td_backend *sb;
    int64_t xs[2] = { 300, 260 }, ws[2] = { 140, 260 }, ys[2] = { 300, 140 }, ss[2] = { 2, 3 };
    int64_t qs[3] = { 300, 2, 16 }, cx[4] = { 5, 3, 20, 30 }, cw[5] = { 4, 5, 3, 3, 3 }, cy[4] = { 4, 3, 20, 30 };
    td_conv3d_params cp = { { 1, 1, 1 }, 2, 0, 1, 1 };
    td_tensor x, w, wb, wq, wsc, y1, y2, q, o1, o2, cxt, cwt, cy1, cy2;

    if (ops_env_init(&pe) < 0)
        return 1;
    td_ctx_init(&sctx);
    if (td_backend_cpu_create(&sctx, 1 << 20, &sb) < 0)
        return 1;
    x = rand_tensor(&pe, &r, 2, xs, 1.0f);
    w = rand_tensor(&pe, &r, 2, ws, 1.0f);
    wb = narrowed(&pe, &w, TD_BF16);
    wq = zero_tensor(&pe, TD_I8, 2, ws);
    for (int64_t i = 0; i < td_numel(&wq); i++)
        ((int8_t *)wq.data)[i] = (int8_t)(test_next(&r) & 0xff);
    wsc = rand_tensor(&pe, &r, 2, ss, 0.01f);
    y1 = zero_tensor(&pe, TD_F32, 2, ys);
    y2 = zero_tensor(&pe, TD_F32, 2, ys);
    q = rand_tensor(&pe, &r, 3, qs, 1.0f);
    o1 = zero_tensor(&pe, TD_F32, 3, qs);
    o2 = zero_tensor(&pe, TD_F32, 3, qs);
    cxt = rand_tensor(&pe, &r, 4, cx, 1.0f);
    cwt = rand_tensor(&pe, &r, 5, cw, 1.0f);
    cy1 = zero_tensor(&pe, TD_F32, 4, cy);
    cy2 = zero_tensor(&pe, TD_F32, 4, cy);

    CHECK_OK(&pe, pe.be->ops->linear(pe.be, &x, &wb, NULL, &y1));
    CHECK_OK(&pe, sb->ops->linear(sb, &x, &wb, NULL, &y2));
    CHECK(cmp(&y2, &y1) < 1e-6, "serial linear differs: %.3g", cmp(&y2, &y1));
    CHECK_OK(&pe, pe.be->ops->linear_w8a8(pe.be, &x, &wq, &wsc, NULL, &y1));
    CHECK_OK(&pe, sb->ops->linear_w8a8(sb, &x, &wq, &wsc, NULL, &y2));
    CHECK(cmp(&y2, &y1) < 1e-6, "serial w8a8 differs: %.3g", cmp(&y2, &y1));
    CHECK_OK(&pe, pe.be->ops->attention(pe.be, &q, &q, &q, NULL, 0.25f, 0, &o1));
    CHECK_OK(&pe, sb->ops->attention(sb, &q, &q, &q, NULL, 0.25f, 0, &o2));
    CHECK(cmp(&o2, &o1) < 1e-6, "serial attention differs: %.3g", cmp(&o2, &o1));
    CHECK_OK(&pe, pe.be->ops->conv3d(pe.be, &cxt, &cwt, NULL, &cp, &cy1));
    CHECK_OK(&pe, sb->ops->conv3d(sb, &cxt, &cwt, NULL, &cp, &cy2));
    CHECK(cmp(&cy2, &cy1) < 1e-6, "serial conv3d differs: %.3g", cmp(&cy2, &cy1));
    CHECK_OK(&pe, sb->ops->gelu_tanh(sb, &y1, &y2));
    CHECK_OK(&pe, pe.be->ops->gelu_tanh(pe.be, &y1, &y1));
    CHECK(cmp(&y2, &y1) == 0.0, "serial gelu differs: %.3g", cmp(&y2, &y1));

    td_tensor_free(&x); td_tensor_free(&w); td_tensor_free(&wb); td_tensor_free(&wq);
    td_tensor_free(&wsc); td_tensor_free(&y1); td_tensor_free(&y2); td_tensor_free(&q);
    td_tensor_free(&o1); td_tensor_free(&o2); td_tensor_free(&cxt); td_tensor_free(&cwt);
    td_tensor_free(&cy1); td_tensor_free(&cy2);
    td_backend_destroy(&sb);
    ops_env_free(&pe);
    return check_summary();
}
