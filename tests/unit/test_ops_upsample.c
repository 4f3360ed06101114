/* nearest upsampling against direct indexing, plus errors. */
#include "ops_common.h"

static void test_upsample(ops_env *e, test_rng *r)
{
    static const int64_t shapes[][3] = { { 1, 1, 1 }, { 3, 5, 7 }, { 2, 13, 1 } };
    static const int f[][2] = { { 2, 2 }, { 1, 3 }, { 3, 1 } };
    for (int s = 0; s < 3; s++)
        for (int q = 0; q < 3; q++) {
            int fh = f[q][0], fw = f[q][1];
            int64_t C = shapes[s][0], H = shapes[s][1], W = shapes[s][2], ys[3] = { C, H * fh, W * fw };
            td_tensor x = rand_tensor(e, r, 3, shapes[s], 1.0f), y = zero_tensor(e, TD_F32, 3, ys);
            int bad = 0;
            CHECK_OK(e, e->be->ops->upsample_nearest(e->be, &x, fh, fw, &y));
            for (int64_t c = 0; c < C; c++)
                for (int64_t i = 0; i < H * fh; i++)
                    for (int64_t j = 0; j < W * fw; j++)
                        bad += ((float *)y.data)[(c * H * fh + i) * W * fw + j] !=
                               ((float *)x.data)[(c * H + i / fh) * W + j / fw];
            CHECK(bad == 0, "upsample %lldx%lldx%lld by %dx%d: %d wrong", (long long)C, (long long)H,
                  (long long)W, fh, fw, bad);
            td_tensor_free(&x); td_tensor_free(&y);
        }
}

static void test_errors(ops_env *e, test_rng *r)
{
    int64_t xs[3] = { 2, 3, 4 }, ys[3] = { 2, 6, 7 }, y2[3] = { 3, 6, 8 };
    td_tensor x = rand_tensor(e, r, 3, xs, 1.0f), y = zero_tensor(e, TD_F32, 3, ys), yc = zero_tensor(e, TD_F32, 3, y2);
    CHECK_FAILS(e, e->be->ops->upsample_nearest(e->be, &x, 2, 2, &y), TD_ESHAPE, "upsample_nearest");
    CHECK_FAILS(e, e->be->ops->upsample_nearest(e->be, &x, 2, 2, &yc), TD_ESHAPE, "upsample_nearest");
    CHECK_FAILS(e, e->be->ops->upsample_nearest(e->be, &x, 0, 2, &yc), TD_EINVAL, "upsample_nearest");
    td_tensor_free(&x); td_tensor_free(&y); td_tensor_free(&yc);
}

int main(void)
{
    test_rng r = test_rng_seeded();
    ops_env e;
    if (ops_env_init(&e) < 0)
        return 1;
    test_upsample(&e, &r);
    test_errors(&e, &r);
    ops_env_free(&e);
    return check_summary();
}
