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

#endif
