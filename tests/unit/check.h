/*
 * Minimal test harness for the C unit tests: CHECK counts passes and
 * failures, test_rng gives reproducible random inputs whose seed is printed
 * (set TD_TEST_SEED to replay a failure), and check_summary prints the
 * "N passed, N failed" line ctest logs show and returns the exit status.
 */
#ifndef TD_TEST_CHECK_H
#define TD_TEST_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int check_passed, check_failed;

#define CHECK(cond, ...) do {                                            \
        if (cond) { check_passed++; }                                    \
        else {                                                           \
            check_failed++;                                              \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                \
            fputc('\n', stderr);                                         \
        }                                                                \
    } while (0)

static inline int check_summary(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

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

/* ||a - b|| / ||b|| with b the reference, in double. */
static inline double rel_l2_fd(const float *a, const double *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline double rel_l2_ff(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#endif
