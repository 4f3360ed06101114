/* CPU implementation of td_backend_ops.sla_attention (see backend.h). */
#ifndef TD_BACKEND_CPU_SLA_H
#define TD_BACKEND_CPU_SLA_H

#include "backend/backend.h"

int td_cpu_sla_attention(td_backend *be, const td_tensor *q, const td_tensor *k,
                         const td_tensor *v, const td_tensor *proj_w, const td_tensor *proj_b,
                         int blk_q, int blk_k, double topk, td_tensor *out);

#endif
