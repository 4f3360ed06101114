/* The .y4m writer (see y4m.h). */
#include <math.h>
#include <stdlib.h>

#include "y4m.h"

int y4m_header(FILE *f, int64_t w, int64_t h)
{
    return fprintf(f, "YUV4MPEG2 W%lld H%lld F16:1 Ip A1:1 C420jpeg\n", (long long)w, (long long)h);
}

static uint8_t to_u8(double v)
{
    v = floor(v + 0.5);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

int y4m_write_rgb(y4m_out *o, const float *rgb, int64_t W, int64_t H)
{
    int64_t plane = H * W;
    uint8_t *y = o->buf, *u = y + plane, *v = u + plane / 4;

    for (int64_t i = 0; i < plane; i++) {
        const float *p = rgb + 3 * i;
        y[i] = to_u8(16 + (65.481 * p[0] + 128.553 * p[1] + 24.966 * p[2]) / 255);
    }
    for (int64_t yy = 0; yy < H / 2; yy++)
        for (int64_t xx = 0; xx < W / 2; xx++) {
            double R = 0, G = 0, B = 0;
            for (int d = 0; d < 4; d++) {
                const float *p = rgb + 3 * ((2 * yy + d / 2) * W + 2 * xx + d % 2);
                R += p[0] / 4.0;
                G += p[1] / 4.0;
                B += p[2] / 4.0;
            }
            u[yy * (W / 2) + xx] = to_u8(128 + (-37.797 * R - 74.203 * G + 112.0 * B) / 255);
            v[yy * (W / 2) + xx] = to_u8(128 + (112.0 * R - 93.786 * G - 18.214 * B) / 255);
        }
    if (fputs("FRAME\n", o->f) < 0 ||
        fwrite(o->buf, 1, (size_t)(plane * 3 / 2), o->f) != (size_t)(plane * 3 / 2))
        o->failed = 1;
    return o->failed;
}

int y4m_write_frames(void *opaque, int64_t first, const td_tensor *fr)
{
    y4m_out *o = opaque;
    int64_t n = fr->shape[1], H = fr->shape[2], W = fr->shape[3], plane = H * W;
    float *rgb = malloc(sizeof(float) * (size_t)plane * 3);
    (void)first;

    if (!rgb)
        return o->failed = 1;
    for (int64_t t = 0; t < n && !o->failed; t++) {
        const float *src = (const float *)fr->data + t * plane;
        for (int64_t i = 0; i < plane; i++)
            for (int c = 0; c < 3; c++)
                rgb[3 * i + c] = (src[c * n * plane + i] + 1) * 127.5f;
        y4m_write_rgb(o, rgb, W, H);
    }
    free(rgb);
    return o->failed;
}
