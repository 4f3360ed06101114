/*
 * f32-accurate products on AMX tiles: the split, the packing, the 32x32
 * kernel (amx.h).
 */
#include <stdint.h>
#include <string.h>

#include "amx.h"

#ifdef TD_HAVE_AMX
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

/* CPUID leaf 7: AMX-TILE and AMX-BF16 (sub-leaf 0, EDX bits 24 and 22),
 * AVX512-BF16 (sub-leaf 1, EAX bit 5), read directly: clang 14's
 * __builtin_cpu_supports knows none of them. Linux hands out AMX's 8 KB
 * of tile state only to processes that ask; the answer also covers the
 * OS's saving of it. */
int td_amx_usable(void)
{
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    unsigned a, b, c, d;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d >> 24 & 1) || !(d >> 22 & 1) ||
        !__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a >> 5 & 1))
        return 0;
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

TD_AMX_TARGET void td_amx_split3(const float *x, float scale, int64_t n, int64_t np, uint16_t *part,
                                 int64_t pstride)
{
    for (int64_t j = 0; j < np; j += 16) {
        __mmask16 m = (__mmask16)(n - j >= 16 ? 0xffff : n > j ? (1u << (n - j)) - 1 : 0);
        __m256i h[3];
        td_amx_parts16(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + j), _mm512_set1_ps(scale)), h);
        for (int p = 0; p < 3; p++)
            _mm256_storeu_si256((__m256i *)(part + p * pstride + j), h[p]);
    }
}

/* Palette 1's layout of the tile configuration (64 bytes) */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;

TD_AMX_TARGET void td_amx_configure(void)
{
    amx_config c;
    memset(&c, 0, sizeof(c));
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.colsb[t] = 64;
        c.rows[t] = 16;
    }
    /* gcc 12 does not see ldtilecfg read c and drops the stores above */
    __asm__ volatile("" : : "r"(&c) : "memory");
    _tile_loadconfig(&c);
}

/* Chunk k of K: a's parts 32 k columns on, b's 512 k pair words (16 pair
 * rows of 32) on. */
TD_AMX_TARGET void td_amx_mm32(const uint16_t *const a[3], int64_t lda, const uint16_t *const b0[3],
                            const uint16_t *const b1[3], int64_t nch, float *c, int64_t ldc, int acc)
{
    td_amx_sums_begin(c, ldc, acc);
    for (int64_t k = 0; k < nch; k++) {
        const void *ak[3], *bk0[3], *bk1[3];
        for (int p = 0; p < 3; p++) {
            ak[p] = a[p] + 32 * k;
            bk0[p] = b0[p] + 512 * k;
            bk1[p] = b1[p] + 512 * k;
        }
        td_amx_chunk6(ak, lda, bk0, bk1, 64);
    }
    td_amx_sums_end(c, ldc);
}

TD_AMX_TARGET void td_amx_pack_b_rows(const float *src, int64_t ld, int64_t rows, int64_t r0,
                                      int64_t nr, int64_t n, int64_t np, int64_t kcs, int64_t ng,
                                      uint16_t *dst)
{
    uint16_t part[3 * 32];
    const uint32_t *pair = (const uint32_t *)part;
    for (int64_t r = r0; r < r0 + nr; r++) {
        /* 32 of K at a time: each part's 16 pairs go to pair rows 16 words apart */
        for (int64_t c0 = 0; c0 < np; c0 += 32) {
            int64_t left = r < rows ? n - c0 : 0;
            uint32_t *col = (uint32_t *)dst + ((c0 / kcs * ng + r / 16) * 3 * kcs + c0 % kcs) * 8 + r % 16;
            memset(part, 0, sizeof(part));
            if (left > 0)
                td_amx_split3(src + r * ld + c0, 1.0f, left < 32 ? left : 32, 32, part, 32);
            for (int p = 0; p < 3; p++)
                for (int64_t i = 0; i < 16; i++)
                    col[(p * kcs / 2 + i) * 16] = pair[p * 16 + i];
        }
    }
}

/* The bf16 of a weight is its one part: the same layout with one block per
 * group and chunk, pairs copied as they are. */
void td_amx_pack_b_rows_bf16(const uint16_t *src, int64_t ld, int64_t rows, int64_t r0, int64_t nr,
                             int64_t n, int64_t np, int64_t kcs, int64_t ng, uint16_t *dst)
{
    for (int64_t r = r0; r < r0 + nr; r++)
        for (int64_t j = 0; j < np; j++) {
            uint16_t *pair = dst + ((j / kcs * ng + r / 16) * kcs + j % kcs / 2 * 2) * 16 + r % 16 * 2;
            pair[j % 2] = r < rows && j < n ? src[r * ld + j] : 0;
        }
}

/* a's three parts by b's one (bf16 weights): 8 loads for 12 products, the
 * smallest part first. */
TD_AMX_TARGET void td_amx_mm32_w1(const uint16_t *const a[3], int64_t lda, const uint16_t *const b0[1],
                                  const uint16_t *const b1[1], int64_t nch, float *c, int64_t ldc, int acc)
{
    td_amx_sums_begin(c, ldc, acc);
    for (int64_t k = 0; k < nch; k++) {
        td_amx_load_b(b0[0] + 512 * k, b1[0] + 512 * k, 64);
        for (int p = 2; p >= 0; p--) {
            td_amx_load_a(a[p] + 32 * k, lda);
            td_amx_dp();
        }
    }
    td_amx_sums_end(c, ldc);
}

TD_AMX_TARGET void td_amx_release(void)
{
    _tile_release();
}

#else

int td_amx_usable(void)
{
    return 0;
}

#endif
