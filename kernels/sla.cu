// SLA (sparse-linear attention) pieces: the block map (key mean, pooled q
// and smoothed k, scores and top-k per query block) in f64 with the CPU's
// summation order and no FMA contraction, so the GPU picks the very blocks
// the CPU picks; and the linear branch (phi = softmax over D). The sparse
// part is attention.cu's kernel walking the selected blocks.
#include "common.cuh"

#define SLA_ROWS 32     // rows of phi(k) and v staged in shared memory at a time
#define SLA_CHUNK 256   // rows one block of sla_kv_kernel reduces before its atomics
#define SLA_DMAX 128

// Mean of k over the sequence, one thread per (head, dim), rows in order.
__global__ void sla_kmean_kernel(const td_bf16_bits *k, int64_t S, int64_t h, int64_t d, double *mean)
{
    int64_t hd = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (hd >= h * d) return;
    double acc = 0;
    for (int64_t s = 0; s < S; s++) acc = __dadd_rn(acc, (double)bf2f(k[s * h * d + hd]));
    mean[hd] = acc / (double)S;
}

// Block means, one thread per (head, dim) of block blockIdx.y, the ragged
// last block divided by its true row count; minus the key mean for k.
__global__ void sla_pool_kernel(const td_bf16_bits *x, int64_t S, int64_t h, int64_t d, int blk,
                                const double *mean, double *p)
{
    int64_t hd = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, b = blockIdx.y, nb = gridDim.y;
    if (hd >= h * d) return;
    int64_t s0 = b * blk, s1 = min(s0 + blk, S);
    double acc = 0;
    for (int64_t s = s0; s < s1; s++) acc = __dadd_rn(acc, (double)bf2f(x[s * h * d + hd]));
    acc = acc / (double)(s1 - s0);
    p[((hd / d) * nb + b) * d + hd % d] = mean ? __dsub_rn(acc, mean[hd]) : acc;
}

// Block map, one block per (query block, head): scores of every key block
// into shared memory, then key block j is kept when fewer than nsel blocks
// beat it (higher score, or equal score and lower index), which is the
// CPU's repeated first-maximum pick; thread 0 lists the kept ones in order.
// A NaN score ranks as -inf: "beats" must be a strict total order, else
// (NaN compares false both ways) more than nsel blocks would be kept and
// the list would run past its row; the writer stops at nsel regardless.
__global__ void sla_select_kernel(const double *pq, const double *pk, int64_t nq, int64_t nk, int64_t d,
                                  int nsel, int *sel)
{
    extern __shared__ double score[];
    int64_t i = blockIdx.x, hh = blockIdx.y;
    const double *q = pq + (hh * nq + i) * d;
    unsigned char *keep = (unsigned char *)(score + nk);
    for (int64_t b = threadIdx.x; b < nk; b += blockDim.x) {
        const double *kb = pk + (hh * nk + b) * d;
        double s = 0;
        for (int64_t e = 0; e < d; e++) s = __dadd_rn(s, __dmul_rn(q[e], kb[e]));
        score[b] = isnan(s) ? -INFINITY : s;
    }
    __syncthreads();
    for (int64_t b = threadIdx.x; b < nk; b += blockDim.x) {
        int64_t beat = 0;
        for (int64_t c = 0; c < nk; c++) beat += score[c] > score[b] || (score[c] == score[b] && c < b);
        keep[b] = beat < nsel;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int *out = sel + (hh * nq + i) * nsel, n = 0;
        for (int64_t b = 0; b < nk && n < nsel; b++)
            if (keep[b]) out[n++] = (int)b;
    }
}

// Softmax over d of row r of x (one warp; lane owns dims lane + 32 e) into phi.
__device__ void warp_softmax_row(const td_bf16_bits *x, int d, float *phi)
{
    int lane = threadIdx.x & 31;
    float v[SLA_DMAX / 32], mx = -INFINITY, sum = 0.0f;
    for (int e = 0; e < SLA_DMAX / 32; e++) {
        v[e] = lane + 32 * e < d ? bf2f(x[lane + 32 * e]) : -INFINITY;
        mx = fmaxf(mx, v[e]);
    }
    mx = warp_max(mx);
    for (int e = 0; e < SLA_DMAX / 32; e++) {
        v[e] = lane + 32 * e < d ? __expf(v[e] - mx) : 0.0f;
        sum += v[e];
    }
    float inv = 1.0f / warp_sum(sum);
    for (int e = 0; e < SLA_DMAX / 32; e++)
        if (lane + 32 * e < d) phi[lane + 32 * e] = v[e] * inv;
}

// phi(k)^T v and sum phi(k), one block per (head, chunk of 256 rows): 32
// rows at a time, each warp writes softmax rows of k and copies v rows to
// shared memory, then thread t accumulates the (d1, d2) entries t, t + 256,
// ... in registers; one atomicAdd per entry per chunk.
__global__ void __launch_bounds__(256) sla_kv_kernel(const td_bf16_bits *k, const td_bf16_bits *v, int64_t S,
                                                     int64_t h, int d, float *kv, float *ksum)
{
    __shared__ float phi[SLA_ROWS][SLA_DMAX], vs[SLA_ROWS][SLA_DMAX];
    int64_t hh = blockIdx.x, c0 = (int64_t)blockIdx.y * SLA_CHUNK;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float acc[SLA_DMAX * SLA_DMAX / 256], ks = 0.0f;
#pragma unroll
    for (int i = 0; i < SLA_DMAX * SLA_DMAX / 256; i++) acc[i] = 0.0f;
    for (int64_t r0 = c0; r0 < min(c0 + SLA_CHUNK, S); r0 += SLA_ROWS) {
        __syncthreads();
        for (int r = warp; r < SLA_ROWS; r += 8) {
            int64_t s = r0 + r;
            if (s < S) {
                warp_softmax_row(k + (s * h + hh) * d, d, phi[r]);
                for (int e = lane; e < d; e += 32) vs[r][e] = bf2f(v[(s * h + hh) * d + e]);
            } else {
                for (int e = lane; e < d; e += 32) phi[r][e] = vs[r][e] = 0.0f;
            }
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < SLA_DMAX * SLA_DMAX / 256; i++) {
            int pidx = threadIdx.x + 256 * i;
            if (pidx < d * d)
                for (int r = 0; r < SLA_ROWS; r++) acc[i] += phi[r][pidx / d] * vs[r][pidx % d];
        }
        if (threadIdx.x < d)
            for (int r = 0; r < SLA_ROWS; r++) ks += phi[r][threadIdx.x];
    }
#pragma unroll
    for (int i = 0; i < SLA_DMAX * SLA_DMAX / 256; i++) {
        int pidx = threadIdx.x + 256 * i;
        if (pidx < d * d) atomicAdd(&kv[hh * d * d + pidx], acc[i]);
    }
    if (threadIdx.x < d) atomicAdd(&ksum[hh * d + threadIdx.x], ks);
}

// Linear branch output, one warp per (row, head): phi(q) in the lanes, the
// numerator phi(q) kv with phi broadcast by shuffle, the denominator by a
// warp sum.
__global__ void sla_linear_kernel(const td_bf16_bits *q, const float *kv, const float *ksum, int64_t S,
                                  int64_t h, int d, td_bf16_bits *ol)
{
    __shared__ float phi[8][SLA_DMAX];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t row = blockIdx.x * 8LL + warp;
    if (row >= S * h) return;
    int64_t hh = row % h;
    const float *m = kv + hh * d * d, *ks = ksum + hh * d;
    warp_softmax_row(q + row * d, d, phi[warp]);
    __syncwarp();
    float num[SLA_DMAX / 32] = { 0 }, den = 0.0f;
    for (int e = lane; e < d; e += 32) den += phi[warp][e] * ks[e];
    den = warp_sum(den);
    for (int j = 0; j < d; j++) {
        float pj = phi[warp][j];
        for (int e = 0; e < SLA_DMAX / 32; e++)
            if (lane + 32 * e < d) num[e] += pj * m[j * d + lane + 32 * e];
    }
    float inv = 1.0f / (1e-5f + den);
    for (int e = 0; e < SLA_DMAX / 32; e++)
        if (lane + 32 * e < d) ol[row * d + lane + 32 * e] = f2bf(num[e] * inv);
}

extern "C" cudaError_t tdk_sla_kmean(cudaStream_t s, const td_bf16_bits *k, int64_t S, int64_t h, int64_t d,
                                     double *mean)
{
    if (h * d > 0) sla_kmean_kernel<<<(unsigned)((h * d + 127) / 128), 128, 0, s>>>(k, S, h, d, mean);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_sla_pool(cudaStream_t s, const td_bf16_bits *x, int64_t S, int64_t h, int64_t d,
                                    int blk, const double *mean, double *p)
{
    dim3 grid((unsigned)((h * d + 127) / 128), (unsigned)((S + blk - 1) / blk));
    if (h * d > 0 && S > 0) sla_pool_kernel<<<grid, 128, 0, s>>>(x, S, h, d, blk, mean, p);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_sla_select(cudaStream_t s, const double *pq, const double *pk, int64_t h, int64_t nq,
                                      int64_t nk, int64_t d, int nsel, int *sel)
{
    dim3 grid((unsigned)nq, (unsigned)h);
    if (nq > 0 && h > 0)
        sla_select_kernel<<<grid, 256, (size_t)nk * (sizeof(double) + 1), s>>>(pq, pk, nq, nk, d, nsel, sel);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_sla_kv(cudaStream_t s, const td_bf16_bits *k, const td_bf16_bits *v, int64_t S,
                                  int64_t h, int64_t d, float *kv, float *ksum)
{
    dim3 grid((unsigned)h, (unsigned)((S + SLA_CHUNK - 1) / SLA_CHUNK));
    if (h > 0 && S > 0) sla_kv_kernel<<<grid, 256, 0, s>>>(k, v, S, h, (int)d, kv, ksum);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_sla_linear(cudaStream_t s, const td_bf16_bits *q, const float *kv, const float *ksum,
                                      int64_t S, int64_t h, int64_t d, td_bf16_bits *ol)
{
    if (S * h > 0) sla_linear_kernel<<<(unsigned)((S * h + 7) / 8), 256, 0, s>>>(q, kv, ksum, S, h, (int)d, ol);
    return cudaGetLastError();
}
