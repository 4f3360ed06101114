/*
 * Wan's 3-D RoPE: head_dim d is split into d - 4 (d / 6) channels for the
 * frame index and 2 (d / 6) each for row and column; channel pair i of a
 * part of width n turns by pos * 10000^(-2i / n) (rope_params, f64 in Wan
 * and diffusers). Pairs are interleaved (x[2i], x[2i + 1]), as the backend's
 * rope op rotates them; the table row of token (f, h, w) concatenates the
 * three parts' angles.
 */
#include <math.h>

#include "dit_internal.h"

void td_dit_rope_tables(int head_dim, int64_t tp, int64_t hp, int64_t wp, float *cos_t, float *sin_t)
{
    int half = head_dim / 2, nh = 2 * (head_dim / 6), nt = head_dim - 2 * nh;
    int parts[3] = { nt / 2, nh / 2, nh / 2 }, width[3] = { nt, nh, nh };
    int64_t s = 0;
    for (int64_t f = 0; f < tp; f++)
        for (int64_t h = 0; h < hp; h++)
            for (int64_t w = 0; w < wp; w++, s++) {
                int64_t pos[3] = { f, h, w };
                int c = 0;
                for (int p = 0; p < 3; p++)
                    for (int i = 0; i < parts[p]; i++, c++) {
                        double a = (double)pos[p] * pow(10000.0, -(double)(2 * i) / width[p]);
                        cos_t[s * half + c] = (float)cos(a);
                        sin_t[s * half + c] = (float)sin(a);
                    }
            }
}
