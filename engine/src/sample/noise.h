/*
 * Counter-based Gaussian noise: the same (seed, stream, index) gives the same
 * float on every machine and backend, with no generator state to carry.
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
 * 3", SC'11) keyed by the 64-bit seed, counter = (block as 64 bits,
 * stream as 64 bits) for block j = index / 4. Its four 32-bit words w give
 * uniforms u = (w + 0.5) / 2^32 in (0, 1), and Box-Muller in f64
 * (r = sqrt(-2 ln u0), z = r cos(2 pi u1), r sin(2 pi u1); same for u2, u3)
 * gives elements 4j .. 4j + 3, rounded to f32.
 * Streams separate independent noises (the sampler uses stream i for its
 * noise number i). Element values do not depend on n or on threading.
 */
#ifndef TD_SAMPLE_NOISE_H
#define TD_SAMPLE_NOISE_H

#include <stdint.h>

/* Philox4x32-10 block: ctr and key in, 4 words out. */
void td_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* x[i] = N(0, 1) sample number i of (seed, stream), i in [0, n). */
void td_noise_fill(uint64_t seed, uint64_t stream, float *x, int64_t n);

#endif
