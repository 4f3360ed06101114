/*
 * Scalar math the CPU ops run per element, written branch-free so gcc
 * vectorises the loops around them at the baseline x86-64 ISA (libm's expf
 * and fmaxf stay calls there, and were a quarter of attention's time).
 */
#ifndef TD_BACKEND_CPU_MATH_H
#define TD_BACKEND_CPU_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float td_maxf(float a, float b)
{
    return a > b ? a : b;
}

/* exp(x) to ~1 ulp: x = n ln2 + r with |r| <= ln2/2, exp(r) by the Cephes
 * expf polynomial, 2^n put into the exponent bits. Below -87.3 (where f32
 * exp underflows) it returns 0, which also makes exp(-inf) = 0; above 88.7
 * it saturates at exp(88.7) rather than inf; NaN stays NaN. n is read from
 * the mantissa of the rounding sum, so no float-to-int conversion (and no
 * branch) is needed. */
static inline float td_expf(float x)
{
    const float magic = 12582912.0f;   /* 1.5 * 2^23: round to nearest */
    float xc = x < -87.3f ? -87.3f : x;
    float t, n, r, p = 1.9875691500e-4f, scale;
    uint32_t tb, mb, bits;   /* unsigned: a NaN's bits would overflow int32 below */

    xc = xc > 88.7f ? 88.7f : xc;
    t = xc * 1.44269504088896341f + magic;
    n = t - magic;
    r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    memcpy(&tb, &t, sizeof(tb));
    memcpy(&mb, &magic, sizeof(mb));
    bits = (tb - mb + 127u) << 23;
    memcpy(&scale, &bits, sizeof(scale));
    p *= scale;
    return x < -87.3f ? 0.0f : p;
}

/* Reductions over a row with 8 independent accumulators: gcc does not
 * reorder a single float accumulator (no -ffast-math), these it vectorises. */
static inline float td_row_max(const float *x, int64_t n)
{
    float acc[8] = { -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                     -INFINITY, -INFINITY, -INFINITY, -INFINITY };
    float m = -INFINITY;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; u++)
            acc[u] = td_maxf(acc[u], x[j + u]);
    for (; j < n; j++)
        m = td_maxf(m, x[j]);
    for (int u = 0; u < 8; u++)
        m = td_maxf(m, acc[u]);
    return m;
}

static inline float td_row_absmax(const float *x, int64_t n)
{
    float acc[8] = { 0 }, m = 0.0f;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; u++)
            acc[u] = td_maxf(acc[u], fabsf(x[j + u]));
    for (; j < n; j++)
        m = td_maxf(m, fabsf(x[j]));
    for (int u = 0; u < 8; u++)
        m = td_maxf(m, acc[u]);
    return m;
}

static inline float td_row_sum(const float *x, int64_t n)
{
    float acc[8] = { 0 }, s = 0.0f;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; u++)
            acc[u] += x[j + u];
    for (; j < n; j++)
        s += x[j];
    for (int u = 0; u < 8; u++)
        s += acc[u];
    return s;
}

/* x[j] = exp(x[j] - m) */
static inline void td_row_exp_sub(float *x, int64_t n, float m)
{
    for (int64_t j = 0; j < n; j++)
        x[j] = td_expf(x[j] - m);
}

#endif
