/*
 * td_expf (cpu_math.h) on 8 and 16 lanes, for the softmax of attention's
 * tiles (attention.c, attention_amx.c). x86 only; each function carries
 * its own target attribute, so the build needs no -march.
 */
#ifndef TD_BACKEND_CPU_SIMD_EXP_H
#define TD_BACKEND_CPU_SIMD_EXP_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* td_expf's algorithm and constants on 8 or 16 lanes, with FMA: from
 * xc_ (x clamped), n_ = round(x / ln2) and p_ = exp(x - n_ ln2); the
 * caller scales p_ by 2^n_. */
#define EXP_REDUCE(V, F)                                                              \
    F t_ = V##fmadd_ps(xc_, V##set1_ps(1.44269504088896341f), magic_);                \
    F n_ = V##sub_ps(t_, magic_);                                                     \
    F r_ = V##fnmadd_ps(n_, V##set1_ps(0.693359375f), xc_);                           \
    F p_ = V##set1_ps(1.9875691500e-4f);                                              \
    r_ = V##fmadd_ps(n_, V##set1_ps(2.12194440e-4f), r_);                             \
    p_ = V##fmadd_ps(p_, r_, V##set1_ps(1.3981999507e-3f));                           \
    p_ = V##fmadd_ps(p_, r_, V##set1_ps(8.3334519073e-3f));                           \
    p_ = V##fmadd_ps(p_, r_, V##set1_ps(4.1665795894e-2f));                           \
    p_ = V##fmadd_ps(p_, r_, V##set1_ps(1.6666665459e-1f));                           \
    p_ = V##fmadd_ps(p_, r_, V##set1_ps(5.0000001201e-1f));                           \
    p_ = V##add_ps(V##fmadd_ps(p_, V##mul_ps(r_, r_), r_), V##set1_ps(1.0f))

/* td_expf on 8 or 16 lanes: the same clamps, 0 below -87.3 (so
 * exp(-inf) = 0) and NaN kept (max/min return their second operand, x,
 * when it is NaN). */
#define EXP_BODY(V, F, I, W)                                                          \
    const F lo_ = V##set1_ps(-87.3f), magic_ = V##set1_ps(12582912.0f);               \
    F xc_ = V##min_ps(V##set1_ps(88.7f), V##max_ps(lo_, x));                          \
    EXP_REDUCE(V, F);                                                                 \
    I e_ = V##slli_epi32(V##add_epi32(V##sub_epi32(V##castps_si##W(t_),               \
                                                      V##castps_si##W(magic_)),       \
                                         V##set1_epi32(127)), 23);                    \
    p_ = V##mul_ps(p_, V##castsi##W##_ps(e_))

__attribute__((target("avx512f")))
static inline __m512 exp512(__m512 x)
{
    EXP_BODY(_mm512_, __m512, __m512i, 512);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lo_, _CMP_LT_OQ), p_, _mm512_setzero_ps());
}

__attribute__((target("avx2,fma")))
static inline __m256 exp256(__m256 x)
{
    EXP_BODY(_mm256_, __m256, __m256i, 256);
    return _mm256_andnot_ps(_mm256_cmp_ps(x, lo_, _CMP_LT_OQ), p_);
}

/* exp512 for x <= 0 (a softmax's x - max) on the lanes of k, 0 on the
 * others: 2^n by scalef, no upper clamp. */
__attribute__((target("avx512f")))
static inline __m512 exp512_neg(__m512 x, __mmask16 k)
{
    const __m512 lo_ = _mm512_set1_ps(-87.3f), magic_ = _mm512_set1_ps(12582912.0f);
    __m512 xc_ = _mm512_max_ps(lo_, x);
    EXP_REDUCE(_mm512_, __m512);
    return _mm512_maskz_scalef_ps(k & _mm512_cmp_ps_mask(x, lo_, _CMP_NLT_UQ), p_, n_);
}

#endif
#endif
