/* The .y4m writer (see y4m.h). */
#include <math.h>

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

int y4m_write_frames(void *opaque, int64_t first, const td_tensor *fr)
{
    y4m_out *o = opaque;
    int64_t n = fr->shape[1], H = fr->shape[2], W = fr->shape[3], plane = H * W;
    uint8_t *y = o->buf, *u = y + plane, *v = u + plane / 4;
    (void)first;
    for (int64_t t = 0; t < n; t++) {
        const float *r = (const float *)fr->data + t * plane, *g = r + n * plane, *b = g + n * plane;
        for (int64_t i = 0; i < plane; i++) {
            double R = (r[i] + 1) * 127.5, G = (g[i] + 1) * 127.5, B = (b[i] + 1) * 127.5;
            y[i] = to_u8(16 + (65.481 * R + 128.553 * G + 24.966 * B) / 255);
        }
        for (int64_t yy = 0; yy < H / 2; yy++)
            for (int64_t xx = 0; xx < W / 2; xx++) {
                double R = 0, G = 0, B = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        int64_t i = (2 * yy + dy) * W + 2 * xx + dx;
                        R += (r[i] + 1) * 127.5 / 4;
                        G += (g[i] + 1) * 127.5 / 4;
                        B += (b[i] + 1) * 127.5 / 4;
                    }
                u[yy * (W / 2) + xx] = to_u8(128 + (-37.797 * R - 74.203 * G + 112.0 * B) / 255);
                v[yy * (W / 2) + xx] = to_u8(128 + (112.0 * R - 93.786 * G - 18.214 * B) / 255);
            }
        if (fputs("FRAME\n", o->f) < 0 || fwrite(o->buf, 1, (size_t)(plane * 3 / 2), o->f) != (size_t)(plane * 3 / 2)) {
            o->failed = 1;
            return 1;
        }
    }
    return 0;
}

