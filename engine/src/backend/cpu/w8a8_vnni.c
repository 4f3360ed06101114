/*
 * W8A8 block products on int8 dot-product units (see w8a8.h). Built for
 * every x86-64 CPU: each kernel carries its own target attribute and runs
 * only where td_cpu_w8a8_supported says the CPU has the instructions, so
 * the build needs no -march.
 *
 * vpdpbusd multiplies unsigned by signed bytes and adds each group of four
 * products into an int32 lane. Activations are stored + 128 (unsigned);
 * each accumulator starts at -128 * (the column's weight sum), so it ends
 * at the signed sum exactly: |terms| <= 255 * 128 * 128 < 2^31. The
 * rescale uses separate multiply and add (the file is built with
 * -ffp-contract=off) so y gets the bits of the sgemm path's
 * y + (float)S * sc.
 */
#include <string.h>

#include "w8a8.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define TD_X86 1
#endif

/* The int32 sums of a tile's rows, rescaled into y one element at a time:
 * the kernels' path for a ragged right edge. */
static void rescale_scalar(const td_w8_tile *t, const int32_t *s, int nr)
{
    for (int r = 0; r < t->rows; r++) {
        float *y = t->y + r * t->ldy;
        for (int j = 0; j < t->cols; j++) {
            float p = (float)s[r * nr + j] * t->sc[r];
            y[j] = t->first ? p : y[j] + p;
        }
    }
}

static inline int32_t load4(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

#ifdef TD_X86
/* The accumulators are named variables, not an array: gcc keeps an array
 * of vectors in memory and shuffles it through registers every step. */

/* The rescale into y of one row's two accumulator vectors (see w8a8.h). */
#define RESCALE(V, W, T, r, lo, hi)                                              \
    do {                                                                         \
        if ((r) < (T)->rows) {                                                   \
            float *y_ = (T)->y + (r) * (T)->ldy;                                 \
            V##ps sc_ = V##set1_ps((T)->sc[r]);                                  \
            V##ps p0_ = V##mul_ps(V##cvtepi32_ps(lo), sc_);                      \
            V##ps p1_ = V##mul_ps(V##cvtepi32_ps(hi), sc_);                      \
            if (!(T)->first) {                                                   \
                p0_ = V##add_ps(V##loadu_ps(y_), p0_);                           \
                p1_ = V##add_ps(V##loadu_ps(y_ + (W)), p1_);                     \
            }                                                                    \
            V##storeu_ps(y_, p0_);                                               \
            V##storeu_ps(y_ + (W), p1_);                                         \
        }                                                                        \
    } while (0)

#define MR512 8
#define NR512 32
typedef __m512 _mm512_ps;

#define STEP512(r)                                                               \
    do {                                                                         \
        __m512i a_ = _mm512_set1_epi32(load4(x##r + 4 * q));                     \
        s##r##0 = _mm512_dpbusd_epi32(s##r##0, a_, b0);                          \
        s##r##1 = _mm512_dpbusd_epi32(s##r##1, a_, b1);                          \
    } while (0)

__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void tile_avx512(const td_w8_tile *t)
{
    __m512i c0 = _mm512_loadu_si512(t->corr), c1 = _mm512_loadu_si512(t->corr + 16);
    __m512i s00 = c0, s01 = c1, s10 = c0, s11 = c1, s20 = c0, s21 = c1, s30 = c0, s31 = c1;
    __m512i s40 = c0, s41 = c1, s50 = c0, s51 = c1, s60 = c0, s61 = c1, s70 = c0, s71 = c1;
    /* rows past t->rows redo row 0 and are not stored */
    const uint8_t *x0 = t->x, *x1 = t->x + (t->rows > 1) * t->ldx, *x2 = t->x + (t->rows > 2) * 2 * t->ldx;
    const uint8_t *x3 = t->x + (t->rows > 3) * 3 * t->ldx, *x4 = t->x + (t->rows > 4) * 4 * t->ldx;
    const uint8_t *x5 = t->x + (t->rows > 5) * 5 * t->ldx, *x6 = t->x + (t->rows > 6) * 6 * t->ldx;
    const uint8_t *x7 = t->x + (t->rows > 7) * 7 * t->ldx;

    for (int64_t q = 0; q < t->kq; q++) {
        __m512i b0 = _mm512_loadu_si512(t->w + q * 4 * NR512);
        __m512i b1 = _mm512_loadu_si512(t->w + q * 4 * NR512 + 64);
        STEP512(0); STEP512(1); STEP512(2); STEP512(3);
        STEP512(4); STEP512(5); STEP512(6); STEP512(7);
    }
    if (t->cols < NR512) {
        int32_t s[MR512 * NR512];
        __m512i all[MR512][2] = { { s00, s01 }, { s10, s11 }, { s20, s21 }, { s30, s31 },
                                  { s40, s41 }, { s50, s51 }, { s60, s61 }, { s70, s71 } };
        for (int r = 0; r < MR512; r++) {
            _mm512_storeu_si512(s + r * NR512, all[r][0]);
            _mm512_storeu_si512(s + r * NR512 + 16, all[r][1]);
        }
        rescale_scalar(t, s, NR512);
        return;
    }
    RESCALE(_mm512_, 16, t, 0, s00, s01); RESCALE(_mm512_, 16, t, 1, s10, s11);
    RESCALE(_mm512_, 16, t, 2, s20, s21); RESCALE(_mm512_, 16, t, 3, s30, s31);
    RESCALE(_mm512_, 16, t, 4, s40, s41); RESCALE(_mm512_, 16, t, 5, s50, s51);
    RESCALE(_mm512_, 16, t, 6, s60, s61); RESCALE(_mm512_, 16, t, 7, s70, s71);
}

#define MR256 6
#define NR256 16
typedef __m256 _mm256_ps;

#define STEP256(r)                                                               \
    do {                                                                         \
        __m256i a_ = _mm256_set1_epi32(load4(x##r + 4 * q));                     \
        s##r##0 = _mm256_dpbusd_avx_epi32(s##r##0, a_, b0);                      \
        s##r##1 = _mm256_dpbusd_avx_epi32(s##r##1, a_, b1);                      \
    } while (0)

__attribute__((target("avx2,avxvnni")))
static void tile_avxvnni(const td_w8_tile *t)
{
    __m256i c0 = _mm256_loadu_si256((const __m256i *)t->corr);
    __m256i c1 = _mm256_loadu_si256((const __m256i *)(t->corr + 8));
    __m256i s00 = c0, s01 = c1, s10 = c0, s11 = c1, s20 = c0, s21 = c1;
    __m256i s30 = c0, s31 = c1, s40 = c0, s41 = c1, s50 = c0, s51 = c1;
    const uint8_t *x0 = t->x, *x1 = t->x + (t->rows > 1) * t->ldx, *x2 = t->x + (t->rows > 2) * 2 * t->ldx;
    const uint8_t *x3 = t->x + (t->rows > 3) * 3 * t->ldx, *x4 = t->x + (t->rows > 4) * 4 * t->ldx;
    const uint8_t *x5 = t->x + (t->rows > 5) * 5 * t->ldx;

    for (int64_t q = 0; q < t->kq; q++) {
        __m256i b0 = _mm256_loadu_si256((const __m256i *)(t->w + q * 4 * NR256));
        __m256i b1 = _mm256_loadu_si256((const __m256i *)(t->w + q * 4 * NR256 + 32));
        STEP256(0); STEP256(1); STEP256(2); STEP256(3); STEP256(4); STEP256(5);
    }
    if (t->cols < NR256) {
        int32_t s[MR256 * NR256];
        __m256i all[MR256][2] = { { s00, s01 }, { s10, s11 }, { s20, s21 },
                                  { s30, s31 }, { s40, s41 }, { s50, s51 } };
        for (int r = 0; r < MR256; r++) {
            _mm256_storeu_si256((__m256i *)(s + r * NR256), all[r][0]);
            _mm256_storeu_si256((__m256i *)(s + r * NR256 + 8), all[r][1]);
        }
        rescale_scalar(t, s, NR256);
        return;
    }
    RESCALE(_mm256_, 8, t, 0, s00, s01); RESCALE(_mm256_, 8, t, 1, s10, s11);
    RESCALE(_mm256_, 8, t, 2, s20, s21); RESCALE(_mm256_, 8, t, 3, s30, s31);
    RESCALE(_mm256_, 8, t, 4, s40, s41); RESCALE(_mm256_, 8, t, 5, s50, s51);
}
#endif

#ifdef TD_X86
/* AVX-VNNI: CPUID leaf 7, sub-leaf 1, EAX bit 4 (read directly: not every
 * compiler's __builtin_cpu_supports knows it); the OS's saving of the ymm
 * state is covered by the avx2 check beside it. */
static int has_avxvnni(void)
{
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 4 & 1);
}
#endif

int td_cpu_w8a8_supported(td_w8_path path)
{
#ifdef TD_X86
    __builtin_cpu_init();
    switch (path) {
    case TD_W8_SGEMM:
        return 1;
    case TD_W8_AVXVNNI:
        return __builtin_cpu_supports("avx2") && has_avxvnni();
    case TD_W8_AVX512VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vnni");
    }
    return 0;
#else
    return path == TD_W8_SGEMM;
#endif
}

td_w8_path td_cpu_w8a8_best(td_isa cap)
{
    if (cap >= TD_ISA_AVX512 && td_cpu_w8a8_supported(TD_W8_AVX512VNNI))
        return TD_W8_AVX512VNNI;
    if (cap >= TD_ISA_AVX2 && td_cpu_w8a8_supported(TD_W8_AVXVNNI))
        return TD_W8_AVXVNNI;
    return TD_W8_SGEMM;
}

td_w8_kernel td_w8_kernel_of(td_w8_path path)
{
#ifdef TD_X86
    if (path == TD_W8_AVX512VNNI)
        return (td_w8_kernel){ MR512, NR512, tile_avx512 };
    if (path == TD_W8_AVXVNNI)
        return (td_w8_kernel){ MR256, NR256, tile_avxvnni };
#endif
    (void)path;
    return (td_w8_kernel){ 0, 0, NULL };
}
