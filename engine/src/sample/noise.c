/* Counter-based Gaussian noise: Philox4x32-10 + Box-Muller (see noise.h). */
#include <math.h>

#include "noise.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void td_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];

    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

static double unit_open(uint32_t w)
{
    return ((double)w + 0.5) * (1.0 / 4294967296.0);
}

void td_noise_fill(uint64_t seed, uint64_t stream, float *x, int64_t n)
{
    const double two_pi = 6.283185307179586476925286766559;
    const uint32_t key[2] = { (uint32_t)seed, (uint32_t)(seed >> 32) };

    for (int64_t i = 0; i < n; i += 4) {
        uint64_t block = (uint64_t)i / 4;
        uint32_t ctr[4] = { (uint32_t)block, (uint32_t)(block >> 32),
                            (uint32_t)stream, (uint32_t)(stream >> 32) };
        uint32_t w[4];
        double z[4];

        td_philox4x32_10(ctr, key, w);
        for (int p = 0; p < 2; p++) {
            double r = sqrt(-2.0 * log(unit_open(w[2 * p])));
            double a = two_pi * unit_open(w[2 * p + 1]);
            z[2 * p] = r * cos(a);
            z[2 * p + 1] = r * sin(a);
        }
        for (int e = 0; e < 4 && i + e < n; e++)
            x[i + e] = (float)z[e];
    }
}
