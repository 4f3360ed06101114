/*
 * W8A8 int8 tile kernels (w8a8_vnni.c), private to w8a8.c: the int32 sum
 * of one 128-wide K block on the CPU's int8 dot-product units, rescaled
 * into y exactly as the widen + sgemm path does.
 */
#ifndef TD_BACKEND_CPU_W8A8_H
#define TD_BACKEND_CPU_W8A8_H

#include <stdint.h>

#include "isa.h"

/* How the int8 x int8 block products run; picked once per backend from
 * what the CPU supports (td_cpu_w8a8_best), tests may force another. */
typedef enum {
    TD_W8_SGEMM,        /* widen to f32, one sgemm per K block: any CPU */
    TD_W8_AVXVNNI,      /* vpdpbusd on ymm (AVX-VNNI) */
    TD_W8_AVX512VNNI,   /* vpdpbusd on zmm (AVX512-VNNI) */
} td_w8_path;

/* The fastest path this CPU runs within cap, and whether it runs a given one. */
td_w8_path td_cpu_w8a8_best(td_isa cap);
int td_cpu_w8a8_supported(td_w8_path path);

/* One micro-tile of at most mr rows x nr columns (see td_w8_kernel_of):
 *  x:    activations + 128 as unsigned bytes, rows ldx bytes apart, 4 * kq
 *        bytes read per row;
 *  w:    the weights of the tile's nr columns, packed [kq][nr][4] (int8);
 *  corr: per column, -128 * sum of its weights over the block (int32), so
 *        corr + sum (x + 128) w = sum x w exactly;
 *  sc:   per row, xscale * wscale;
 *  y:    rows ldy floats apart; y = S * sc (first) or y + S * sc, with S
 *        the exact int32 block sum converted to float: the sgemm path's
 *        arithmetic, so the bits are the same. */
typedef struct {
    const uint8_t *x;
    int64_t ldx, kq;
    const int8_t *w;
    const int32_t *corr;
    const float *sc;
    float *y;
    int64_t ldy;
    int rows, cols, first;
} td_w8_tile;

typedef struct {
    int mr, nr;                         /* micro-tile rows and columns */
    void (*run)(const td_w8_tile *t);
} td_w8_kernel;

/* The kernel of an int8 path (not TD_W8_SGEMM). */
td_w8_kernel td_w8_kernel_of(td_w8_path path);

#endif
