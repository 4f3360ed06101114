/* Direct 3-D convolution: one thread per output value, summing its
 * Ci x kt x kh x kw taps with zero padding outside the input. Correct for
 * every geometry the VAE uses; the implicit-GEMM kernel that makes it fast
 * is issue 8's. */
#include "tdk_common.cuh"

__global__ void conv3d_k(const float *x, const void *w, const void *bias, int wt, float *y, tdk_conv3d_geom p)
{
    int64_t n = p.co * p.to * p.ho * p.wo;
    TDK_FOR(i, n) {
        int64_t xo = i % p.wo, yo = (i / p.wo) % p.ho, t = (i / (p.wo * p.ho)) % p.to;
        int64_t co = i / (p.wo * p.ho * p.to);
        float acc = bias ? tdk_load(bias, wt, co) : 0.0f;
        for (int64_t ci = 0; ci < p.ci; ci++)
            for (int a = 0; a < p.kt; a++) {
                int64_t ti = t * p.st + a - p.pad_t_front;
                if (ti < 0 || ti >= p.t)
                    continue;
                for (int b = 0; b < p.kh; b++) {
                    int64_t yi = yo * p.sh + b - p.pad_h;
                    if (yi < 0 || yi >= p.h)
                        continue;
                    for (int c = 0; c < p.kw; c++) {
                        int64_t xi = xo * p.sw + c - p.pad_w;
                        if (xi < 0 || xi >= p.w)
                            continue;
                        acc += x[((ci * p.t + ti) * p.h + yi) * p.w + xi] *
                               tdk_load(w, wt, (((co * p.ci + ci) * p.kt + a) * p.kh + b) * p.kw + c);
                    }
                }
            }
        y[i] = acc;
    }
}

extern "C" cudaError_t tdk_conv3d(const float *x, const void *w, const void *bias, int wt, float *y,
                                  const tdk_conv3d_geom *p, cudaStream_t s)
{
    conv3d_k<<<tdk_grid(p->co * p->to * p->ho * p->wo), TDK_THREADS, 0, s>>>(x, w, bias, wt, y, *p);
    return cudaGetLastError();
}
