/*
 * Rotary embedding on interleaved pairs, as Wan applies it (x viewed as
 * complex numbers x[2i] + j x[2i+1], multiplied by cos + j sin): one
 * cos/sin table row per position, shared by every head. The 3-D (frame,
 * height, width) split of the angles lives in the table the model builds.
 */
#include "cpu.h"

typedef struct {
    const float *x, *c, *s;
    float *y;
    int64_t h, d;
} rope_args;

static void rope_positions(void *arg, int64_t s0, int64_t s1)
{
    const rope_args *a = arg;
    int64_t half = a->d / 2;
    for (int64_t s = s0; s < s1; s++) {
        const float *c = a->c + s * half, *sn = a->s + s * half;
        for (int64_t h = 0; h < a->h; h++) {
            const float *x = a->x + (s * a->h + h) * a->d;
            float *y = a->y + (s * a->h + h) * a->d;
            for (int64_t i = 0; i < half; i++) {
                float re = x[2 * i], im = x[2 * i + 1];
                y[2 * i] = re * c[i] - im * sn[i];
                y[2 * i + 1] = re * sn[i] + im * c[i];
            }
        }
    }
}

int td_cpu_rope(td_backend *be, const td_tensor *x, const td_tensor *cos_t,
                const td_tensor *sin_t, td_tensor *y)
{
    static const char op[] = "rope";
    char s1[96], s2[96], s3[96];
    rope_args a;

    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_act(be, op, "cos", cos_t));
    TD_TRY(td_check_act(be, op, "sin", sin_t));
    if (x->ndim != 3 || y->ndim != 3 || x->shape[0] != y->shape[0] || x->shape[1] != y->shape[1] ||
        x->shape[2] != y->shape[2] || x->shape[2] % 2)
        return td_fail(be->ctx, TD_ESHAPE, "%s: x %s and y %s must be the same [S, H, D] with D even",
                       op, td_shape_str(x, s1, sizeof(s1)), td_shape_str(y, s2, sizeof(s2)));
    if (cos_t->ndim != 2 || sin_t->ndim != 2 || cos_t->shape[0] != x->shape[0] ||
        cos_t->shape[1] != x->shape[2] / 2 || sin_t->shape[0] != cos_t->shape[0] ||
        sin_t->shape[1] != cos_t->shape[1])
        return td_fail(be->ctx, TD_ESHAPE, "%s: cos %s and sin %s must be [S, D/2] for x %s", op,
                       td_shape_str(cos_t, s1, sizeof(s1)), td_shape_str(sin_t, s2, sizeof(s2)),
                       td_shape_str(x, s3, sizeof(s3)));
    a = (rope_args){ x->data, cos_t->data, sin_t->data, y->data, x->shape[1], x->shape[2] };
    td_pool_for(td_cpu_pool(be), x->shape[0], 16, rope_positions, &a);
    return 0;
}
