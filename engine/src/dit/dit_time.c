/*
 * Wan's sinusoidal timestep embedding (wan/modules/model.py,
 * sinusoidal_embedding_1d), in f64 as upstream: [cos(t f), sin(t f)] with
 * f_i = 10000^(-i / half). diffusers' Timesteps(flip_sin_to_cos=True,
 * downscale_freq_shift=0) is the same order and frequencies, in f32.
 */
#include <math.h>

#include "dit_internal.h"

void td_dit_time_embedding(double t, int freq_dim, float *emb)
{
    int half = freq_dim / 2;
    for (int i = 0; i < half; i++) {
        double a = t * pow(10000.0, -(double)i / half);
        emb[i] = (float)cos(a);
        emb[half + i] = (float)sin(a);
    }
}
