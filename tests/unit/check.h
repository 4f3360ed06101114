/*
 * Minimal test harness for the C unit tests: CHECK counts passes and
 * failures, check_summary prints the "N passed, N failed" line ctest logs
 * show and returns the exit status; test_rng (tests/support/test_rng.h)
 * gives the reproducible random inputs.
 */
#ifndef TD_TEST_CHECK_H
#define TD_TEST_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "test_rng.h"

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
