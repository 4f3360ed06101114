/*
 * Reproducible random test inputs: test_rng_seeded prints its seed (set
 * TD_TEST_SEED to replay a failure). In tests/support so that the shared
 * test code draws from the same generator as the test that calls it.
 */
#ifndef TD_TEST_RNG_H
#define TD_TEST_RNG_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* splitmix64: tiny, good enough for test data. */
typedef struct { uint64_t s; } test_rng;

static inline test_rng test_rng_seeded(void)
{
    const char *env = getenv("TD_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)clock() << 20;
    printf("seed %llu (replay with TD_TEST_SEED=%llu)\n",
           (unsigned long long)seed, (unsigned long long)seed);
    return (test_rng){ seed };
}

static inline uint64_t test_next(test_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static inline float test_uniform(test_rng *r)
{
    return (float)((test_next(r) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

static inline void test_fill(test_rng *r, float *x, size_t n, float amp)
{
    for (size_t i = 0; i < n; i++)
        x[i] = amp * test_uniform(r);
}

#endif
