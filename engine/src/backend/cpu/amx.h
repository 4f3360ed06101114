/*
 * f32-accurate products on Intel AMX tiles, shared by attention_amx.c and
 * linear_amx.c.
 *
 * AMX multiplies bf16 pairs into f32 sums 16x faster than AVX-512 FMAs on
 * f32, but one bf16 keeps 8 of an f32's 24 significant bits: products of
 * bf16-rounded operands are ~1e-2 off, far from the f32 bar (rel L2 1e-5).
 * So every operand is split into three bf16 parts, x = x0 + x1 + x2,
 * exactly (each part takes the next 8 bits), and each product keeps the
 * six part products whose weight is at least 2^-16 of the whole:
 *   a b ~ a0 b0 + a0 b1 + a0 b2 + a1 b0 + a1 b1 + a2 b0
 * The three dropped are below 2^-26 of a b, under f32's own rounding. Two
 * parts with three products (CUTLASS's 3xTF32 recipe on bf16) were 0.5-3e-5
 * off on attention, not enough (bench/NOTES.md).
 *
 * Layouts: an A operand (rows of the product) is row-major, one [rows][K]
 * array per part. A B operand (columns of the product) is in AMX's pair
 * layout, per group of 16 columns and part a [K/2][16][2] block (K rows 2i
 * and 2i + 1 of a column side by side), K padded with zeros to a multiple
 * of 32. K may come in chunks of kcs (a multiple of 32): chunk c of group
 * g's part p is block (c ng + g) 3 + p of kcs/2 pair rows, ng groups in
 * all, so one chunk's groups lie side by side.
 */
#ifndef TD_BACKEND_CPU_AMX_H
#define TD_BACKEND_CPU_AMX_H

#include <stdint.h>

/* 1 where this process can run AMX-BF16: CPUID, and Linux's permission
 * for the tile state, asked for here (given once per process). */
int td_amx_usable(void);

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define TD_HAVE_AMX 1
#include <immintrin.h>

#define TD_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16,fma")))

static inline int64_t td_amx_up32(int64_t n)
{
    return (n + 31) / 32 * 32;
}

/* 16 floats to the bf16 nearest each, and back */
TD_AMX_TARGET static inline __m256i td_amx_bf16(__m512 x)
{
    return (__m256i)_mm512_cvtneps_pbh(x);
}

TD_AMX_TARGET static inline __m512 td_amx_f32(__m256i h)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Tiles 0-3, the 2x2 block of sums of a 32x32 kernel call: from c[32][32]
 * (rows ldc bytes apart; acc) or zero, and back into c. */
TD_AMX_TARGET static inline void td_amx_sums_begin(float *c, int64_t ldc, int acc)
{
    if (acc) {
        _tile_loadd(0, c, ldc);
        _tile_loadd(1, c + 16, ldc);
        _tile_loadd(2, (char *)c + 16 * ldc, ldc);
        _tile_loadd(3, (char *)c + 16 * ldc + 64, ldc);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
}

TD_AMX_TARGET static inline void td_amx_sums_end(float *c, int64_t ldc)
{
    _tile_stored(0, c, ldc);
    _tile_stored(1, c + 16, ldc);
    _tile_stored(2, (char *)c + 16 * ldc, ldc);
    _tile_stored(3, (char *)c + 16 * ldc + 64, ldc);
}

/* The three parts of scale x[0, n), zero from n to np (a multiple of 16):
 * part[p][j], rows np apart. */
void td_amx_split3(const float *x, float scale, int64_t n, int64_t np, uint16_t *part);

/* Rows r0..r0+nr (nr a multiple of 32; rows past `rows` are zeros) of
 * src [rows][n] (row stride ld) as B operand columns, K = n padded to np,
 * in chunks of kcs, ng groups: into dst's groups from r0 / 16 (dst is the
 * whole operand). */
void td_amx_pack_b_rows(const float *src, int64_t ld, int64_t rows, int64_t r0, int64_t nr,
                        int64_t n, int64_t np, int64_t kcs, int64_t ng, uint16_t *dst);

/* td_amx_pack_b_rows for bf16 rows: a bf16 is exactly its one part, so
 * one block per group and chunk ((c ng + g) of kcs/2 pair rows). */
void td_amx_pack_b_rows_bf16(const uint16_t *src, int64_t ld, int64_t rows, int64_t r0, int64_t nr,
                             int64_t n, int64_t np, int64_t kcs, int64_t ng, uint16_t *dst);

/* The calling thread's tiles: 8 of 16 rows x 64 bytes; release before the
 * thread leaves AMX code for long (the kernel saves the state with it). */
void td_amx_configure(void);
void td_amx_release(void);

/* c[32][32] (rows ldc bytes apart) = or += (acc) the six part products of
 * a and b: a's parts a[p] [32][K] (rows lda bytes apart), b's two column
 * groups' parts b0[p], b1[p] (pair layout), K = 32 nch. */
void td_amx_mm32(const uint16_t *const a[3], int64_t lda, const uint16_t *const b0[3],
                 const uint16_t *const b1[3], int64_t nch, float *c, int64_t ldc, int acc);
/* The same where b is bf16 (one part, a0 b + a1 b + a2 b: exact products). */
void td_amx_mm32_w1(const uint16_t *const a[3], int64_t lda, const uint16_t *const b0[1],
                    const uint16_t *const b1[1], int64_t nch, float *c, int64_t ldc, int acc);
#endif

#endif
