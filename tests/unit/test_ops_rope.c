/* rope on interleaved pairs against a double rotation, plus errors. */
#include "ops_common.h"

static void test_rope(ops_env *e, test_rng *r)
{
    static const int64_t shapes[][3] = { { 1, 1, 2 }, { 7, 3, 6 }, { 130, 2, 128 }, { 33, 12, 64 } };
    for (int s = 0; s < 4; s++) {
        int64_t S = shapes[s][0], H = shapes[s][1], D = shapes[s][2], ts[2] = { S, D / 2 }, n = S * H * D;
        td_tensor x = rand_tensor(e, r, 3, shapes[s], 2.0f), y = zero_tensor(e, TD_F32, 3, shapes[s]);
        td_tensor co = zero_tensor(e, TD_F32, 2, ts), si = zero_tensor(e, TD_F32, 2, ts);
        double *ref = malloc(sizeof(double) * (size_t)n);
        const float *X = x.data;
        for (int64_t i = 0; i < S * D / 2; i++) {
            float ang = 3.14159265f * test_uniform(r);
            ((float *)co.data)[i] = cosf(ang);
            ((float *)si.data)[i] = sinf(ang);
        }
        for (int64_t p = 0; p < S; p++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < D / 2; i++) {
                    int64_t o = (p * H + h) * D + 2 * i;
                    double c = ((float *)co.data)[p * D / 2 + i], sn = ((float *)si.data)[p * D / 2 + i];
                    ref[o] = X[o] * c - X[o + 1] * sn;
                    ref[o + 1] = X[o] * sn + X[o + 1] * c;
                }
        CHECK_OK(e, e->be->ops->rope(e->be, &x, &co, &si, &y));
        CHECK(rel_l2_fd(y.data, ref, (size_t)n) < 1e-7, "rope %lldx%lldx%lld: %.3g", (long long)S,
              (long long)H, (long long)D, rel_l2_fd(y.data, ref, (size_t)n));
        CHECK_OK(e, e->be->ops->rope(e->be, &x, &co, &si, &x));
        CHECK(rel_l2_fd(x.data, ref, (size_t)n) < 1e-7, "rope in place");
        free(ref);
        td_tensor_free(&x); td_tensor_free(&y); td_tensor_free(&co); td_tensor_free(&si);
    }
}

static void test_errors(ops_env *e, test_rng *r)
{
    int64_t xs[3] = { 4, 2, 8 }, odd[3] = { 4, 2, 7 }, ts[2] = { 4, 4 }, tb[2] = { 3, 4 };
    td_tensor x = rand_tensor(e, r, 3, xs, 1.0f), xo = rand_tensor(e, r, 3, odd, 1.0f);
    td_tensor t = rand_tensor(e, r, 2, ts, 1.0f), tw = rand_tensor(e, r, 2, tb, 1.0f);
    CHECK_FAILS(e, e->be->ops->rope(e->be, &xo, &t, &t, &xo), TD_ESHAPE, "rope");
    CHECK_FAILS(e, e->be->ops->rope(e->be, &x, &tw, &t, &x), TD_ESHAPE, "rope");
    CHECK_FAILS(e, e->be->ops->rope(e->be, &x, &t, &tw, &x), TD_ESHAPE, "rope");
    td_tensor_free(&x); td_tensor_free(&xo); td_tensor_free(&t); td_tensor_free(&tw);
}

int main(void)
{
    test_rng r = test_rng_seeded();
    ops_env e;
    if (ops_env_init(&e) < 0)
        return 1;
    test_rope(&e, &r);
    test_errors(&e, &r);
    ops_env_free(&e);
    return check_summary();
}
