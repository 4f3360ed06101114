/* gelu_tanh, silu, softmax, add/mul with broadcast, modulate and add_gated
 * against double formulas (torch's definitions), in place too, plus errors. */
#include "ops_common.h"

/* Largest error in units of the terms' magnitude: a sum that cancels
 * can lose all relative precision, so rel L2 alone would be flaky for the
 * one-element cases; f32 rounding of 2-3 operations stays below ~3e-7. */
static double worst_err(const float *y, const double *ref, const double *mag, int64_t n)
{
    double w = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(y[i] - ref[i]) / (mag[i] > 1e-30 ? mag[i] : 1e-30);
        w = e > w ? e : w;
    }
    return w;
}

static const int64_t sizes[][2] = { { 1, 1 }, { 7, 3 }, { 130, 129 }, { 5, 300 }, { 3, 5003 } };

static double gelu_ref(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

static void test_unary(ops_env *e, test_rng *r)
{
    for (int s = 0; s < 5; s++)
        for (int op = 0; op < 3; op++) {
            int64_t m = sizes[s][0], c = sizes[s][1], n = m * c;
            td_tensor x = rand_tensor(e, r, 2, sizes[s], 6.0f), y = zero_tensor(e, TD_F32, 2, sizes[s]);
            double *ref = malloc(sizeof(double) * (size_t)n);
            const float *X = x.data;
            const char *name = op == 0 ? "gelu_tanh" : op == 1 ? "silu" : "softmax";
            if (op == 2) {
                /* large logits: a softmax without the max shift overflows */
                for (int64_t i = 0; i < n; i++)
                    ((float *)x.data)[i] *= 20.0f;
                for (int64_t i = 0; i < m; i++) {
                    double mx = -INFINITY, sum = 0;
                    for (int64_t j = 0; j < c; j++)
                        mx = fmax(mx, X[i * c + j]);
                    for (int64_t j = 0; j < c; j++)
                        sum += exp(X[i * c + j] - mx);
                    for (int64_t j = 0; j < c; j++)
                        ref[i * c + j] = exp(X[i * c + j] - mx) / sum;
                }
            } else {
                for (int64_t i = 0; i < n; i++)
                    ref[i] = op == 0 ? gelu_ref(X[i]) : X[i] / (1.0 + exp(-(double)X[i]));
            }
            if (op == 0)
                CHECK_OK(e, e->be->ops->gelu_tanh(e->be, &x, &y));
            else if (op == 1)
                CHECK_OK(e, e->be->ops->silu(e->be, &x, &y));
            else
                CHECK_OK(e, e->be->ops->softmax(e->be, &x, &y));
            /* gelu's exponent reaches ~25 at |x| = 6: its f32 rounding alone
             * moves a single output by ~2e-6 relative */
            CHECK(rel_l2_fd(y.data, ref, (size_t)n) < (op == 0 ? 1e-5 : 1e-6), "%s %lldx%lld: %.3g", name,
                  (long long)m, (long long)c, rel_l2_fd(y.data, ref, (size_t)n));
            if (op == 1) {   /* in place */
                CHECK_OK(e, e->be->ops->silu(e->be, &x, &x));
                CHECK(rel_l2_fd(x.data, ref, (size_t)n) < 1e-6, "silu in place");
            }
            free(ref);
            td_tensor_free(&x); td_tensor_free(&y);
        }
}

static void test_binary(ops_env *e, test_rng *r)
{
    for (int s = 0; s < 5; s++)
        for (int mode = 0; mode < 6; mode++) {
            int64_t m = sizes[s][0], c = sizes[s][1], n = m * c;
            int64_t bs[2] = { mode % 3 == 0 ? m : 1, mode % 3 == 2 ? 1 : c };
            int is_mul = mode >= 3;
            td_tensor a = rand_tensor(e, r, 2, sizes[s], 2.0f), y = zero_tensor(e, TD_F32, 2, sizes[s]);
            td_tensor b = rand_tensor(e, r, 2, bs, 2.0f), bn = narrowed(e, &b, mode == 4 ? TD_BF16 : TD_F32);
            int64_t nb = bs[0] * bs[1];
            double *ref = malloc(sizeof(double) * (size_t)n), *mag = malloc(sizeof(double) * (size_t)n);
            const float *A = a.data, *B = b.data;
            for (int64_t i = 0; i < n; i++) {
                ref[i] = is_mul ? (double)A[i] * B[i % nb] : (double)A[i] + B[i % nb];
                mag[i] = is_mul ? fabs(ref[i]) : fabs(A[i]) + fabs(B[i % nb]);
            }
            if (is_mul)
                CHECK_OK(e, e->be->ops->mul(e->be, &a, &bn, &y));
            else
                CHECK_OK(e, e->be->ops->add(e->be, &a, &bn, &y));
            CHECK(worst_err(y.data, ref, mag, n) < 3e-7, "%s %lldx%lld b %lldx%lld: %.3g",
                  is_mul ? "mul" : "add", (long long)m, (long long)c, (long long)bs[0], (long long)bs[1],
                  worst_err(y.data, ref, mag, n));
            free(ref);
            free(mag);
            td_tensor_free(&a); td_tensor_free(&y); td_tensor_free(&b); td_tensor_free(&bn);
        }
}

static void test_modulate_gated(ops_env *e, test_rng *r)
{
    for (int s = 0; s < 5; s++) {
        int64_t m = sizes[s][0], c = sizes[s][1], n = m * c, vs[2] = { 1, c };
        td_tensor x = rand_tensor(e, r, 2, sizes[s], 2.0f), u = rand_tensor(e, r, 2, sizes[s], 2.0f);
        td_tensor y = zero_tensor(e, TD_F32, 2, sizes[s]);
        td_tensor sh = rand_tensor(e, r, 2, vs, 1.0f), sc = rand_tensor(e, r, 2, vs, 1.0f);
        td_tensor g = rand_tensor(e, r, 2, vs, 1.0f);
        double *ref = malloc(sizeof(double) * (size_t)n), *mag = malloc(sizeof(double) * (size_t)n);
        const float *X = x.data, *U = u.data, *SH = sh.data, *SC = sc.data, *G = g.data;
        for (int64_t i = 0; i < n; i++) {
            ref[i] = X[i] * (1.0 + SC[i % c]) + SH[i % c];
            mag[i] = fabs(X[i]) * (1.0 + fabs(SC[i % c])) + fabs(SH[i % c]);
        }
        CHECK_OK(e, e->be->ops->modulate(e->be, &x, &sh, &sc, &y));
        CHECK(worst_err(y.data, ref, mag, n) < 3e-7, "modulate %lldx%lld: %.3g", (long long)m,
              (long long)c, worst_err(y.data, ref, mag, n));
        for (int64_t i = 0; i < n; i++) {
            ref[i] = X[i] + (double)U[i] * G[i % c];
            mag[i] = fabs(X[i]) + fabs((double)U[i] * G[i % c]);
        }
        CHECK_OK(e, e->be->ops->add_gated(e->be, &x, &u, &g));
        CHECK(worst_err(x.data, ref, mag, n) < 3e-7, "add_gated %lldx%lld: %.3g", (long long)m,
              (long long)c, worst_err(x.data, ref, mag, n));
        free(ref);
        free(mag);
        td_tensor_free(&x); td_tensor_free(&u); td_tensor_free(&y);
        td_tensor_free(&sh); td_tensor_free(&sc); td_tensor_free(&g);
    }
}

/* The edges of the exp behind softmax, silu and gelu: -inf logits (masks),
 * and arguments past f32 exp's range. */
static void test_extremes(ops_env *e)
{
    float sx[4] = { 0.0f, -INFINITY, 1.0f, -200.0f }, sy[4];
    float ux[6] = { -100.0f, -88.0f, 88.0f, 100.0f, -1e-30f, 0.0f }, uy[6], gy[6];
    td_tensor st = td_view2(sx, TD_F32, 1, 4), so = td_view2(sy, TD_F32, 1, 4);
    td_tensor ut = td_view1(ux, TD_F32, 6), uo = td_view1(uy, TD_F32, 6), go = td_view1(gy, TD_F32, 6);
    double e1 = exp(1.0);
    CHECK_OK(e, e->be->ops->softmax(e->be, &st, &so));
    CHECK(fabs(sy[0] - 1 / (1 + e1)) < 1e-7 && sy[1] == 0.0f && fabs(sy[2] - e1 / (1 + e1)) < 1e-7 && sy[3] == 0.0f,
          "softmax with -inf: %g %g %g %g", sy[0], sy[1], sy[2], sy[3]);
    CHECK_OK(e, e->be->ops->silu(e->be, &ut, &uo));
    CHECK_OK(e, e->be->ops->gelu_tanh(e->be, &ut, &go));
    for (int i = 0; i < 6; i++) {
        double want = ux[i] / (1.0 + exp(-(double)ux[i]));
        CHECK(isfinite(uy[i]) && fabs(uy[i] - want) <= 1e-6 * fabs(want) + 1e-30, "silu(%g) = %g, want %g",
              ux[i], uy[i], want);
        want = gelu_ref(ux[i]);
        CHECK(isfinite(gy[i]) && fabs(gy[i] - want) <= 1e-6 * fabs(want) + 1e-30, "gelu(%g) = %g, want %g",
              ux[i], gy[i], want);
    }
}

static void test_errors(ops_env *e, test_rng *r)
{
    int64_t xs[2] = { 4, 6 }, ys[2] = { 4, 5 }, b5[1] = { 5 }, b6[1] = { 6 }, t3[2] = { 6, 4 };
    td_tensor x = rand_tensor(e, r, 2, xs, 1.0f), yb = zero_tensor(e, TD_F32, 2, ys);
    td_tensor v5 = rand_tensor(e, r, 1, b5, 1.0f), v6 = rand_tensor(e, r, 1, b6, 1.0f);
    td_tensor xi = zero_tensor(e, TD_I8, 2, xs), xt = zero_tensor(e, TD_F32, 2, t3);
    const td_backend_ops *o = e->be->ops;
    CHECK_FAILS(e, o->gelu_tanh(e->be, &x, &yb), TD_ESHAPE, "gelu_tanh");
    CHECK_FAILS(e, o->silu(e->be, &xi, &x), TD_EINVAL, "silu");
    CHECK_FAILS(e, o->softmax(e->be, &x, &xt), TD_ESHAPE, "softmax");
    CHECK_FAILS(e, o->add(e->be, &x, &v5, &x), TD_ESHAPE, "add");
    CHECK_FAILS(e, o->mul(e->be, &x, &xi, &x), TD_EINVAL, "mul");
    CHECK_FAILS(e, o->modulate(e->be, &x, &v5, &v6, &x), TD_ESHAPE, "modulate");
    CHECK_FAILS(e, o->add_gated(e->be, &x, &x, &v5), TD_ESHAPE, "add_gated");
    CHECK_FAILS(e, o->add_gated(e->be, &x, &yb, &v6), TD_ESHAPE, "add_gated");
    td_tensor_free(&x); td_tensor_free(&yb); td_tensor_free(&v5); td_tensor_free(&v6);
    td_tensor_free(&xi); td_tensor_free(&xt);
}

int main(void)
{
    test_rng r = test_rng_seeded();
    ops_env e;
    if (ops_env_init(&e) < 0)
        return 1;
    test_unary(&e, &r);
    test_binary(&e, &r);
    test_modulate_gated(&e, &r);
    test_extremes(&e);
    test_errors(&e, &r);
    ops_env_free(&e);
    return check_summary();
}
