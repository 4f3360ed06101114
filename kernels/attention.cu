// Flash-attention-style kernel: queries never see more than one key tile at
// a time, softmax is computed online (running max m, running sum l, the
// output rescaled by exp(m_old - m_new)), so no Sq x Sk matrix exists.
// Scalar f32 FMA on bf16 tiles in shared memory, not tensor cores: this is
// the correctness baseline the tensor-core kernel will be checked against.
//
// Two shapes of one template: head dims up to 128 (DiT, umT5: 4 queries per
// warp, 64-key tiles) and up to 512 (the VAE's middle attention, head dim =
// channels: 1 query per warp, 32-key tiles, so the per-lane output stays at
// 16 registers either way and nothing spills to local memory).
#include "common.cuh"

// Block = (WARPS * QW queries, one head). Keys are walked in ranges: [0, kv)
// for full attention, or SLA's selected key blocks (sel: per head and query
// block of blk_q rows, nsel block indices of blk_k keys). Per key tile: K
// and V rows to shared memory (zeros past the range), then each warp takes
// its QW queries in turn: lane j scores keys j, j + 32, ... (full dot over
// d), the warp agrees on the tile max and sum with shuffles, and lane e
// accumulates output dims e, e + 32, ... from V with the probabilities
// broadcast by shuffle. A tile whose scores are all -inf (masked by the
// bias) leaves m at -inf; the exponentials are then taken against 0 so they
// give 0 instead of exp(-inf - -inf) = NaN.
template <int DMAX, int QW, int BK, int WARPS>
struct att_shape {
    static constexpr int KS_LD = DMAX / 2 + 1;   // words per key row: odd, so lane-per-key reads hit 32 banks
    static constexpr int BQ = QW * WARPS;
    static constexpr size_t smem = sizeof(uint32_t) * (BK * KS_LD + BK * (DMAX / 2)) + sizeof(float) * BQ * DMAX;
};

template <int DMAX, int QW, int BK, int WARPS>
__global__ void __launch_bounds__(WARPS * 32, 1)
attention_kernel(const td_bf16_bits *q, const td_bf16_bits *k, const td_bf16_bits *v, td_kvec bias,
                 float scale, int64_t sq, int64_t sk, int64_t kv, int64_t nh, int d, int dv,
                 const int *sel, int nsel, int blk_q, int blk_k, td_bf16_bits *out)
{
    typedef att_shape<DMAX, QW, BK, WARPS> S;
    extern __shared__ uint32_t smem[];
    uint32_t *ks = smem, *vs = smem + BK * S::KS_LD;
    float *qs = (float *)(vs + BK * (DMAX / 2));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int64_t head = blockIdx.y, q0 = (int64_t)blockIdx.x * S::BQ;
    float m[QW], l[QW], o[QW][DMAX / 32];

    for (int i = threadIdx.x; i < S::BQ * d; i += blockDim.x) {
        int64_t r = q0 + i / d;
        qs[(i / d) * DMAX + i % d] = r < sq ? bf2f(q[(r * nh + head) * d + i % d]) : 0.0f;
    }
#pragma unroll
    for (int t = 0; t < QW; t++) {
        m[t] = -INFINITY;
        l[t] = 0.0f;
#pragma unroll
        for (int e = 0; e < DMAX / 32; e++) o[t][e] = 0.0f;
    }
    for (int bi = 0; bi < (sel ? nsel : 1); bi++) {
        int64_t nqb = (sq + blk_q - 1) / blk_q;
        int64_t kbeg = sel ? (int64_t)sel[(head * nqb + q0 / blk_q) * nsel + bi] * blk_k : 0;
        int64_t kend = sel ? min(kbeg + blk_k, kv) : kv;
        for (int64_t k0 = kbeg; k0 < kend; k0 += BK) {
            __syncthreads();   // qs written / previous tile consumed
            for (int i = threadIdx.x; i < BK * (d / 2); i += blockDim.x) {
                int j = i / (d / 2), w = i % (d / 2);
                ks[j * S::KS_LD + w] = k0 + j < kend ? ((const uint32_t *)(k + ((k0 + j) * nh + head) * d))[w] : 0u;
            }
            for (int i = threadIdx.x; i < BK * (dv / 2); i += blockDim.x) {
                int j = i / (dv / 2), w = i % (dv / 2);
                vs[j * (DMAX / 2) + w] = k0 + j < kend ? ((const uint32_t *)(v + ((k0 + j) * nh + head) * dv))[w] : 0u;
            }
            __syncthreads();
#pragma unroll
            for (int t = 0; t < QW; t++) {
                int qi = warp * QW + t;
                int64_t qr = q0 + qi;
                if (qr < sq) {   // uniform over the warp
                    const float *qv = qs + qi * DMAX;
                    float s[BK / 32], tmax = -INFINITY, tsum = 0.0f;
#pragma unroll
                    for (int hb = 0; hb < BK / 32; hb++) {
                        int j = lane + 32 * hb;
                        float dot = 0.0f;
                        for (int w = 0; w < d / 2; w++) {
                            uint32_t kw = ks[j * S::KS_LD + w];
                            dot += qv[2 * w] * bf2f((td_bf16_bits)(kw & 0xffffu)) +
                                   qv[2 * w + 1] * bf2f((td_bf16_bits)(kw >> 16));
                        }
                        dot *= scale;
                        if (bias.p && k0 + j < kend) dot += vld(bias, (head * sq + qr) * sk + k0 + j);
                        s[hb] = k0 + j < kend ? dot : -INFINITY;
                        tmax = fmaxf(tmax, s[hb]);
                    }
                    float mn = fmaxf(m[t], warp_max(tmax));
                    float ref = mn == -INFINITY ? 0.0f : mn;
                    float alpha = __expf(m[t] - ref);
#pragma unroll
                    for (int hb = 0; hb < BK / 32; hb++) {
                        s[hb] = __expf(s[hb] - ref);
                        tsum += s[hb];
                    }
                    l[t] = l[t] * alpha + warp_sum(tsum);
                    m[t] = mn;
#pragma unroll
                    for (int e = 0; e < DMAX / 32; e++) o[t][e] *= alpha;
#pragma unroll
                    for (int hb = 0; hb < BK / 32; hb++)
                        for (int jj = 0; jj < 32; jj++) {
                            float p = __shfl_sync(0xffffffffu, s[hb], jj);
                            const td_bf16_bits *vr = (const td_bf16_bits *)&vs[(32 * hb + jj) * (DMAX / 2)];
#pragma unroll
                            for (int e = 0; e < DMAX / 32; e++)
                                if (lane + 32 * e < dv) o[t][e] += p * bf2f(vr[lane + 32 * e]);
                        }
                }
            }
        }
    }
#pragma unroll
    for (int t = 0; t < QW; t++) {
        int64_t qr = q0 + warp * QW + t;
        if (qr < sq) {
#pragma unroll
            for (int e = 0; e < DMAX / 32; e++)
                if (lane + 32 * e < dv) out[(qr * nh + head) * dv + lane + 32 * e] = f2bf(o[t][e] / l[t]);
        }
    }
}

// Launch the variant whose DMAX covers d and dv; the shared-memory limit is
// raised once per variant (past 48 KB needs the opt-in).
template <int DMAX, int QW, int BK, int WARPS>
static cudaError_t launch(cudaStream_t s, const td_bf16_bits *q, const td_bf16_bits *k, const td_bf16_bits *v,
                          td_kvec bias, float scale, int64_t sq, int64_t sk, int64_t kv, int64_t h, int64_t d,
                          int64_t dv, const int *sel, int nsel, int blk_q, int blk_k, td_bf16_bits *out)
{
    typedef att_shape<DMAX, QW, BK, WARPS> S;
    dim3 grid((unsigned)((sq + S::BQ - 1) / S::BQ), (unsigned)h);
    cudaError_t e = cudaFuncSetAttribute(attention_kernel<DMAX, QW, BK, WARPS>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)S::smem);
    if (e != cudaSuccess) return e;
    attention_kernel<DMAX, QW, BK, WARPS><<<grid, WARPS * 32, S::smem, s>>>(
        q, k, v, bias, scale, sq, sk, kv, h, (int)d, (int)dv, sel, nsel, blk_q, blk_k, out);
    return cudaGetLastError();
}

static cudaError_t dispatch(cudaStream_t s, const td_bf16_bits *q, const td_bf16_bits *k, const td_bf16_bits *v,
                            td_kvec bias, float scale, int64_t sq, int64_t sk, int64_t kv, int64_t h, int64_t d,
                            int64_t dv, const int *sel, int nsel, int blk_q, int blk_k, td_bf16_bits *out)
{
    if (d <= 128 && dv <= 128)
        return launch<128, 4, 64, 4>(s, q, k, v, bias, scale, sq, sk, kv, h, d, dv, sel, nsel, blk_q, blk_k, out);
    return launch<512, 1, 32, 8>(s, q, k, v, bias, scale, sq, sk, kv, h, d, dv, sel, nsel, blk_q, blk_k, out);
}

extern "C" cudaError_t tdk_attention(cudaStream_t s, const td_bf16_bits *q, const td_bf16_bits *k,
                                     const td_bf16_bits *v, td_kvec bias, float scale, int64_t sq,
                                     int64_t sk, int64_t kv, int64_t h, int64_t d, int64_t dv,
                                     td_bf16_bits *out)
{
    if (sq > 0 && h > 0 && kv > 0)
        return dispatch(s, q, k, v, bias, scale, sq, sk, kv, h, d, dv, NULL, 0, 64, 64, out);
    return cudaGetLastError();
}

// SLA's query blocks (64 or 128 rows) are whole multiples of the kernel's
// query tile (16 or 8 rows), so every block of the grid reads one block map row.
extern "C" cudaError_t tdk_sla_sparse(cudaStream_t s, const td_bf16_bits *q, const td_bf16_bits *k,
                                      const td_bf16_bits *v, float scale, int64_t S, int64_t h, int64_t d,
                                      const int *sel, int nsel, int blk_q, int blk_k, td_bf16_bits *out)
{
    td_kvec none = { NULL, TD_K_F32 };
    if (S > 0 && h > 0)
        return dispatch(s, q, k, v, none, scale, S, S, S, h, d, d, sel, nsel, blk_q, blk_k, out);
    return cudaGetLastError();
}
