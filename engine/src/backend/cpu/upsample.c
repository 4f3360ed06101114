/* Nearest-neighbour upsampling of the last two dims by integer factors.
 * For integer factors torch's "nearest" and "nearest-exact" (the Wan VAE's
 * mode) pick the same source pixel, out // f, which is what this does. */
#include "cpu.h"

typedef struct {
    const float *x;
    float *y;
    int64_t h, w;
    int fh, fw;
} up_args;

/* one task per output row */
static void up_rows(void *arg, int64_t r0, int64_t r1)
{
    const up_args *a = arg;
    int64_t ho = a->h * a->fh, wo = a->w * a->fw;
    for (int64_t r = r0; r < r1; r++) {
        int64_t plane = r / ho, yy = r % ho;
        const float *x = a->x + (plane * a->h + yy / a->fh) * a->w;
        float *y = a->y + r * wo;
        for (int64_t i = 0; i < a->w; i++)
            for (int j = 0; j < a->fw; j++)
                y[i * a->fw + j] = x[i];
    }
}

int td_cpu_upsample_nearest(td_backend *be, const td_tensor *x, int fh, int fw, td_tensor *y)
{
    static const char op[] = "upsample_nearest";
    char s1[96], s2[96];
    int nd = x ? x->ndim : 0;
    int ok;
    up_args a;

    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    if (fh < 1 || fw < 1)
        return td_fail(be->ctx, TD_EINVAL, "%s: factors %dx%d must be >= 1", op, fh, fw);
    ok = nd >= 2 && y->ndim == nd && y->shape[nd - 2] == x->shape[nd - 2] * fh &&
         y->shape[nd - 1] == x->shape[nd - 1] * fw;
    for (int i = 0; ok && i < nd - 2; i++)
        ok = x->shape[i] == y->shape[i];
    if (!ok)
        return td_fail(be->ctx, TD_ESHAPE, "%s: y %s is not x %s upsampled %dx%d", op,
                       td_shape_str(y, s2, sizeof(s2)), td_shape_str(x, s1, sizeof(s1)), fh, fw);
    a = (up_args){ x->data, y->data, x->shape[nd - 2], x->shape[nd - 1], fh, fw };
    if (td_numel(y) == 0)
        return 0;
    td_pool_for(td_cpu_pool(be), td_numel(y) / y->shape[nd - 1], 16, up_rows, &a);
    return 0;
}
