/*
 * f32-accurate products on Intel AMX tiles, shared by attention_amx.c,
 * linear_amx.c and conv3d_amx.c.
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

/* The three bf16 parts of 16 floats, r = h[0] + h[1] + h[2] exactly. */
TD_AMX_TARGET static inline void td_amx_parts16(__m512 r, __m256i h[3])
{
    for (int p = 0; p < 3; p++) {
        h[p] = td_amx_bf16(r);
        r = _mm512_sub_ps(r, td_amx_f32(h[p]));
    }
}

/* 16 columns of two rows as B pair words, part p to dst[p][0, 16): x0's
 * bf16 in each word's low half, x1's in its high half; lanes outside m,
 * and every lane of a NULL row, are zeros (and not read). */
TD_AMX_TARGET static inline void td_amx_pair16(const float *x0, const float *x1, __mmask16 m,
                                               uint32_t *const dst[3])
{
    __m256i h0[3], h1[3];
    td_amx_parts16(x0 ? _mm512_maskz_loadu_ps(m, x0) : _mm512_setzero_ps(), h0);
    td_amx_parts16(x1 ? _mm512_maskz_loadu_ps(m, x1) : _mm512_setzero_ps(), h1);
    for (int p = 0; p < 3; p++)
        _mm512_storeu_si512(dst[p], _mm512_or_si512(_mm512_cvtepu16_epi32(h0[p]),
                                                     _mm512_slli_epi32(_mm512_cvtepu16_epi32(h1[p]), 16)));
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

/* Tiles 4-5: a's 32 rows of one chunk of K (rows lda bytes apart); tiles
 * 6-7: b's two column groups (pair rows ldb bytes apart); then the four
 * products into the sums. */
TD_AMX_TARGET static inline void td_amx_load_a(const void *a, int64_t lda)
{
    _tile_loadd(4, a, lda);
    _tile_loadd(5, (const char *)a + 16 * lda, lda);
}

TD_AMX_TARGET static inline void td_amx_load_b(const void *b0, const void *b1, int64_t ldb)
{
    _tile_loadd(6, b0, ldb);
    _tile_loadd(7, b1, ldb);
}

TD_AMX_TARGET static inline void td_amx_dp(void)
{
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
}

/* One chunk of 32 K of the six part products into the sums, a's parts
 * a[p], b's b0[p] and b1[p] (as td_amx_load_a and _b take them), in the
 * order that reloads fewest tiles: 16 loads for 24 products, each of a's
 * parts read once from L2 while b's stay in L1 (81 % of AMX's peak at
 * attention's q k^T, 70 % at p v, bench/NOTES.md). */
TD_AMX_TARGET static inline void td_amx_chunk6(const void *const a[3], int64_t lda, const void *const b0[3],
                                               const void *const b1[3], int64_t ldb)
{
    td_amx_load_a(a[0], lda), td_amx_load_b(b0[1], b1[1], ldb), td_amx_dp();   /* a0 b1 */
    td_amx_load_a(a[1], lda), td_amx_dp();                                     /* a1 b1 */
    td_amx_load_b(b0[0], b1[0], ldb), td_amx_dp();                             /* a1 b0 */
    td_amx_load_a(a[0], lda), td_amx_dp();                                     /* a0 b0 */
    td_amx_load_a(a[2], lda), td_amx_dp();                                     /* a2 b0 */
    td_amx_load_a(a[0], lda), td_amx_load_b(b0[2], b1[2], ldb), td_amx_dp();   /* a0 b2 */
}

/* The three parts of scale x[0, n), zero from n to np (a multiple of 16):
 * part p at part + p pstride, np elements (x is not read when n is 0). */
void td_amx_split3(const float *x, float scale, int64_t n, int64_t np, uint16_t *part, int64_t pstride);

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
