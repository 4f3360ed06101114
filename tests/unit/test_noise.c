/*
 * Counter-based noise (sample/noise.c): Philox4x32-10 known-answer vectors
 * from Random123's kat_vectors, determinism per (seed, stream, index)
 * independent of the fill length, N(0, 1) statistics, and streams/seeds that
 * do not correlate.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sample/noise.h"

static void test_kat(void)
{
    static const struct { uint32_t ctr[4], key[2], out[4]; } kat[] = {
        { { 0, 0, 0, 0 }, { 0, 0 }, { 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 } },
        { { ~0u, ~0u, ~0u, ~0u }, { ~0u, ~0u }, { 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd } },
        { { 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344 }, { 0xa4093822, 0x299f31d0 },
          { 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 } },
    };
    for (size_t i = 0; i < sizeof(kat) / sizeof(kat[0]); i++) {
        uint32_t out[4];
        td_philox4x32_10(kat[i].ctr, kat[i].key, out);
        CHECK(!memcmp(out, kat[i].out, sizeof(out)), "KAT %zu: %08x %08x %08x %08x", i,
              out[0], out[1], out[2], out[3]);
    }
}

static double corr(const float *a, const float *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s / n;
}

static void test_stats(uint64_t seed)
{
    enum { N = 1 << 20 };
    float *a = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N);
    float *c = malloc(sizeof(float) * N), *part = malloc(sizeof(float) * 1001);
    double mean = 0, var = 0, m4 = 0;
    int64_t tail = 0;

    td_noise_fill(seed, 0, a, N);
    td_noise_fill(seed, 1, b, N);
    td_noise_fill(seed + 1, 0, c, N);
    for (int64_t i = 0; i < N; i++) {
        mean += a[i];
        var += (double)a[i] * a[i];
        m4 += (double)a[i] * a[i] * a[i] * a[i];
        tail += fabsf(a[i]) > 3.0f;
    }
    mean /= N;
    var = var / N - mean * mean;
    m4 /= N;
    /* bounds are ~5 standard errors at N = 2^20 */
    CHECK(fabs(mean) < 5e-3, "mean %g", mean);
    CHECK(fabs(var - 1) < 7e-3, "variance %g", var);
    CHECK(fabs(m4 - 3) < 0.05, "fourth moment %g (normal: 3)", m4);
    CHECK(fabs((double)tail / N - 0.0026998) < 5e-4, "P(|z| > 3) = %g (normal: 0.0027)",
          (double)tail / N);
    CHECK(fabs(corr(a, b, N)) < 5e-3, "streams 0 and 1 correlate: %g", corr(a, b, N));
    CHECK(fabs(corr(a, c, N)) < 5e-3, "seeds %llu and +1 correlate: %g",
          (unsigned long long)seed, corr(a, c, N));
    CHECK(fabs(corr(a, a + 1, N - 1)) < 5e-3, "lag-1 correlation %g", corr(a, a + 1, N - 1));

    /* element i does not depend on n: an odd-length fill is a prefix */
    td_noise_fill(seed, 0, part, 1001);
    CHECK(!memcmp(part, a, sizeof(float) * 1001), "prefix of length 1001 differs");
    td_noise_fill(seed, 0, b, N);
    CHECK(!memcmp(a, b, sizeof(float) * N), "same seed and stream differ");
    free(a); free(b); free(c); free(part);
}

/* Fixed values: seed 42, stream 3, elements 0..7, computed by an
 * independent Python Philox + Box-Muller (tests/parity/test_samplers.py has
 * it), so any change of the mapping is caught on every machine. */
static void test_golden(void)
{
    static const float want[8] = { -2.38777876f, 0.849060178f, -0.657004535f, -0.465770721f,
                                   0.852786243f, 0.75664866f, 0.00745297642f, 0.906822801f };
    float x[8];
    td_noise_fill(42, 3, x, 8);
    for (int i = 0; i < 8; i++)
        CHECK(x[i] == want[i], "x[%d] = %.9g, expected %.9g", i, x[i], want[i]);
}

int main(void)
{
    test_rng rng = test_rng_seeded();
    test_kat();
    test_stats(test_next(&rng));
    test_golden();
    return check_summary();
}
