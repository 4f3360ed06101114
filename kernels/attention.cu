// Flash-attention-style kernel: queries never see more than one 64-key tile
// at a time, softmax is computed online (running max m, running sum l, the
// output rescaled by exp(m_old - m_new)), so no Sq x Sk matrix exists.
// Scalar f32 FMA on bf16 tiles in shared memory, not tensor cores: this is
// the correctness baseline the tensor-core kernel will be checked against.
#include "common.cuh"

#define ATT_BK 64          // keys per shared tile
#define ATT_QW 4           // queries per warp
#define ATT_WARPS 4
#define ATT_BQ (ATT_QW * ATT_WARPS)
#define ATT_DMAX 128
#define KS_LD (ATT_DMAX / 2 + 1)   // words per key row: odd, so lane-per-key reads hit 32 banks

// Block = (16 queries, one head). Keys are walked in ranges: [0, kv) for
// full attention, or SLA's selected key blocks (sel: per head and query
// block of blk_q rows, nsel block indices of blk_k keys). Per key tile: K and V rows to shared
// memory (zeros past kv), then each warp takes its 4 queries in turn: lane j
// scores keys j and j+32 (full dot over d), the warp agrees on the tile max
// and sum with shuffles, and lane e accumulates output dims e, e+32, e+64,
// e+96 from V with the probabilities broadcast by shuffle.
__global__ void __launch_bounds__(ATT_WARPS * 32)
attention_kernel(const td_bf16_bits *q, const td_bf16_bits *k, const td_bf16_bits *v, td_kvec bias,
                 float scale, int64_t sq, int64_t sk, int64_t kv, int64_t nh, int d, int dv,
                 const int *sel, int nsel, int blk_q, int blk_k, td_bf16_bits *out)
{
    __shared__ uint32_t ks[ATT_BK * KS_LD];
    __shared__ uint32_t vs[ATT_BK * (ATT_DMAX / 2)];
    __shared__ float qs[ATT_BQ][ATT_DMAX];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int64_t head = blockIdx.y, q0 = (int64_t)blockIdx.x * ATT_BQ;
    float m[ATT_QW], l[ATT_QW], o[ATT_QW][ATT_DMAX / 32];

    for (int i = threadIdx.x; i < ATT_BQ * d; i += blockDim.x) {
        int64_t r = q0 + i / d;
        qs[i / d][i % d] = r < sq ? bf2f(q[(r * nh + head) * d + i % d]) : 0.0f;
    }
    for (int t = 0; t < ATT_QW; t++) {
        m[t] = -INFINITY;
        l[t] = 0.0f;
        for (int e = 0; e < ATT_DMAX / 32; e++) o[t][e] = 0.0f;
    }
    for (int bi = 0; bi < (sel ? nsel : 1); bi++) {
        int64_t nqb = (sq + blk_q - 1) / blk_q;
        int64_t kbeg = sel ? (int64_t)sel[(head * nqb + q0 / blk_q) * nsel + bi] * blk_k : 0;
        int64_t kend = sel ? min(kbeg + blk_k, kv) : kv;
        for (int64_t k0 = kbeg; k0 < kend; k0 += ATT_BK) {
            __syncthreads();   // qs written / previous tile consumed
            for (int i = threadIdx.x; i < ATT_BK * (d / 2); i += blockDim.x) {
                int j = i / (d / 2), w = i % (d / 2);
                ks[j * KS_LD + w] = k0 + j < kend ? ((const uint32_t *)(k + ((k0 + j) * nh + head) * d))[w] : 0u;
            }
            for (int i = threadIdx.x; i < ATT_BK * (dv / 2); i += blockDim.x) {
                int j = i / (dv / 2), w = i % (dv / 2);
                vs[j * (ATT_DMAX / 2) + w] = k0 + j < kend ? ((const uint32_t *)(v + ((k0 + j) * nh + head) * dv))[w] : 0u;
            }
            __syncthreads();
            for (int t = 0; t < ATT_QW; t++) {
                int qi = warp * ATT_QW + t;
                int64_t qr = q0 + qi;
                if (qr >= sq) break;   // uniform over the warp
                float s[2];
                for (int h = 0; h < 2; h++) {
                    int j = lane + 32 * h;
                    float dot = 0.0f;
                    for (int w = 0; w < d / 2; w++) {
                        uint32_t kw = ks[j * KS_LD + w];
                        dot += qs[qi][2 * w] * bf2f((td_bf16_bits)(kw & 0xffffu)) +
                               qs[qi][2 * w + 1] * bf2f((td_bf16_bits)(kw >> 16));
                    }
                    dot *= scale;
                    if (bias.p && k0 + j < kend) dot += vld(bias, (head * sq + qr) * sk + k0 + j);
                    s[h] = k0 + j < kend ? dot : -INFINITY;
                }
                float mn = fmaxf(m[t], warp_max(fmaxf(s[0], s[1])));
                float alpha = __expf(m[t] - mn);
                float p0 = __expf(s[0] - mn), p1 = __expf(s[1] - mn);
                l[t] = l[t] * alpha + warp_sum(p0 + p1);
                m[t] = mn;
                for (int e = 0; e < ATT_DMAX / 32; e++) o[t][e] *= alpha;
                for (int j = 0; j < ATT_BK; j++) {
                    float p = __shfl_sync(0xffffffffu, j < 32 ? p0 : p1, j & 31);
                    const td_bf16_bits *vr = (const td_bf16_bits *)&vs[j * (ATT_DMAX / 2)];
                    for (int e = 0; e < ATT_DMAX / 32; e++)
                        if (lane + 32 * e < dv) o[t][e] += p * bf2f(vr[lane + 32 * e]);
                }
            }
        }
    }
    for (int t = 0; t < ATT_QW; t++) {
        int64_t qr = q0 + warp * ATT_QW + t;
        if (qr >= sq) break;
        for (int e = 0; e < ATT_DMAX / 32; e++)
            if (lane + 32 * e < dv) out[(qr * nh + head) * dv + lane + 32 * e] = f2bf(o[t][e] / l[t]);
    }
}

extern "C" cudaError_t tdk_attention(cudaStream_t s, const td_bf16_bits *q, const td_bf16_bits *k,
                                     const td_bf16_bits *v, td_kvec bias, float scale, int64_t sq,
                                     int64_t sk, int64_t kv, int64_t h, int64_t d, int64_t dv,
                                     td_bf16_bits *out)
{
    dim3 grid((unsigned)((sq + ATT_BQ - 1) / ATT_BQ), (unsigned)h);
    if (sq > 0 && h > 0 && kv > 0)
        attention_kernel<<<grid, ATT_WARPS * 32, 0, s>>>(q, k, v, bias, scale, sq, sk, kv, h, (int)d, (int)dv,
                                                         NULL, 0, ATT_BQ, ATT_BK, out);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_sla_sparse(cudaStream_t s, const td_bf16_bits *q, const td_bf16_bits *k,
                                      const td_bf16_bits *v, float scale, int64_t S, int64_t h, int64_t d,
                                      const int *sel, int nsel, int blk_q, int blk_k, td_bf16_bits *out)
{
    td_kvec none = { NULL, TD_K_F32 };
    dim3 grid((unsigned)((S + ATT_BQ - 1) / ATT_BQ), (unsigned)h);
    if (S > 0 && h > 0)
        attention_kernel<<<grid, ATT_WARPS * 32, 0, s>>>(q, k, v, none, scale, S, S, S, h, (int)d,
                                                         (int)d, sel, nsel, blk_q, blk_k, out);
    return cudaGetLastError();
}
