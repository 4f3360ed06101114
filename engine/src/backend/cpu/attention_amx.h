/*
 * Dense attention on Intel AMX tiles at f32 accuracy (attention_amx.c),
 * the CPU backend's fastest attention path where td_amx_usable().
 */
#ifndef TD_BACKEND_CPU_ATTENTION_AMX_H
#define TD_BACKEND_CPU_ATTENTION_AMX_H

#include <stdint.h>

#include "core/pool.h"

/* softmax(scale q k^T + bias) v over the first sk keys, q, k, v, out
 * [S, h, d or dv] with row strides qs, ks, vs, os; bias NULL or
 * [h, sq, bias_ld]. */
typedef struct {
    const float *q, *k, *v, *bias;
    float *out;
    int64_t sq, sk, h, d, dv, bias_ld;
    int64_t qs, ks, vs, os;
    float scale;
} td_att_problem;

/* packed holds td_cpu_att_amx_bytes(a->sk, a->d, a->dv) bytes, 64-byte
 * aligned: one head's k and v packed, 6 bytes per key and channel of d and
 * of dv. 0, or -1 when a thread cannot allocate its tile's scratch. Only
 * where td_amx_usable(). */
size_t td_cpu_att_amx_bytes(int64_t sk, int64_t d, int64_t dv);
int td_cpu_att_amx(td_pool *pool, const td_att_problem *a, void *packed);

/* SLA's sparse part on the same tiles (a->bias NULL, a->sq = a->sk): head
 * head's k and v packed into packed (as above), then, from any thread,
 * softmax(scale q k^T) v
 * for rows [r0, r0 + nr) (nr <= 256) over the keys of blocks sel[0, nsel)
 * of bk keys (64 or 128; the last block of sk may be short), in that
 * order, into out's rows; buf holds td_cpu_att_amx_tile_bytes(d, dv)
 * bytes, 64-byte aligned. */
void td_cpu_att_amx_pack(td_pool *pool, const td_att_problem *a, int64_t head, void *packed);
size_t td_cpu_att_amx_tile_bytes(int64_t d, int64_t dv);
void td_cpu_att_amx_blocks(const td_att_problem *a, int64_t head, void *packed, int64_t r0, int64_t nr,
                           const int *sel, int64_t nsel, int64_t bk, void *buf);

#endif
