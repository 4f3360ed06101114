/*
 * SLA on the CUDA backend, the CPU op's function (cpu/sla.c) in five
 * launches plus proj_l: key mean, pooled q and smoothed k, the block map,
 * the block-sparse flash attention into out, phi(k)^T v and sum phi(k), the
 * linear branch, then out += proj_l(o_l) through cuBLASLt. All scratch comes
 * from the arena and is released when the op returns.
 */
#include <math.h>
#include <string.h>

#include "cuda_internal.h"

static int check_qkv(td_backend *be, const char *name, const td_tensor *t, const td_tensor *ref)
{
    char a[96], b[96];
    TD_TRY(td_check_act(be, "sla_attention", name, t));
    if (t->ndim != 3 || memcmp(t->shape, ref->shape, sizeof(int64_t) * 3))
        return td_fail(be->ctx, TD_ESHAPE, "sla_attention: %s %s must be [S, H, D] like q %s", name,
                       td_shape_str(t, a, sizeof(a)), td_shape_str(ref, b, sizeof(b)));
    return 0;
}

int td_cuda_sla_attention(td_backend *be, const td_tensor *q, const td_tensor *k,
                          const td_tensor *v, const td_tensor *proj_w,
                          const td_tensor *proj_b, int blk_q, int blk_k, double topk,
                          td_tensor *out)
{
    TD_TRY(td_cuda_enter(be));
    static const char op[] = "sla_attention";
    td_cuda *c = td_cuda_of(be);
    size_t mark = c->arena_used;
    char a[96];
    int64_t S, H, D, nq, nk, nsel;
    double *mean, *pq, *pk;
    int *sel;
    float *kv, *ksum;
    td_bf16_bits *ol, *proj;
    int rc;

    TD_TRY(check_qkv(be, "q", q, q));
    TD_TRY(check_qkv(be, "k", k, q));
    TD_TRY(check_qkv(be, "v", v, q));
    TD_TRY(check_qkv(be, "out", out, q));
    S = q->shape[0];
    H = q->shape[1];
    D = q->shape[2];
    if (S < 1 || H < 1 || D < 1)
        return td_fail(be->ctx, TD_ESHAPE, "%s: empty q %s", op, td_shape_str(q, a, sizeof(a)));
    if (out->data == q->data || out->data == k->data || out->data == v->data)
        return td_fail(be->ctx, TD_EINVAL, "%s: out must not alias q, k or v", op);
    if ((blk_q != 64 && blk_q != 128) || (blk_k != 64 && blk_k != 128))
        return td_fail(be->ctx, TD_EINVAL, "%s: block sizes %d/%d (query/key), each must be 64 or 128",
                       op, blk_q, blk_k);
    if (!(topk > 0.0 && topk <= 1.0))
        return td_fail(be->ctx, TD_EINVAL, "%s: topk %g outside (0, 1]", op, topk);
    if (!proj_w || proj_w->ndim != 2 || proj_w->shape[0] != D || proj_w->shape[1] != D)
        return td_fail(be->ctx, TD_ESHAPE, "%s: proj_l weight %s, expected [%lld, %lld]", op,
                       proj_w ? td_shape_str(proj_w, a, sizeof(a)) : "(missing)", (long long)D, (long long)D);
    TD_TRY(td_cuda_check_weight(be, op, "proj_l weight", proj_w));
    if (proj_b)
        TD_TRY(td_check_float_vec(be->ctx, op, "proj_l bias", proj_b, D));
    nq = (S + blk_q - 1) / blk_q;
    nk = (S + blk_k - 1) / blk_k;
    if (D % 2 || D > 128 || nk > 4096 || H > 65535 || nq > 65535 || S > 0x7fffffff / 2)
        return td_cuda_unsupported(be, op, "head dim must be even and at most 128, at most 4096 key blocks");
    nsel = (int64_t)floor(topk * (double)nk);   /* Python's int(topk * K), at least 1 */
    nsel = nsel < 1 ? 1 : nsel > nk ? nk : nsel;

    mean = td_cuda_scratch(be, sizeof(double) * (size_t)(H * D), op);
    pq = mean ? td_cuda_scratch(be, sizeof(double) * (size_t)(H * nq * D), op) : NULL;
    pk = pq ? td_cuda_scratch(be, sizeof(double) * (size_t)(H * nk * D), op) : NULL;
    sel = pk ? td_cuda_scratch(be, sizeof(int) * (size_t)(H * nq * nsel), op) : NULL;
    kv = sel ? td_cuda_scratch(be, sizeof(float) * (size_t)(H * D * D + H * D), op) : NULL;
    ol = kv ? td_cuda_scratch(be, 2 * (size_t)(S * H * D), op) : NULL;
    proj = ol ? td_cuda_scratch(be, 2 * (size_t)(S * H * D), op) : NULL;
    if (!proj) {
        c->arena_used = mark;
        return be->ctx->err;
    }
    ksum = kv + H * D * D;

#define STEP(call, what) do { rc = td_cuda_check(be, (call), what); if (rc < 0) goto out; } while (0)
    STEP(tdk_sla_kmean(c->stream, k->data, S, H, D, mean), "sla_attention: key mean");
    STEP(tdk_sla_pool(c->stream, q->data, S, H, D, blk_q, NULL, pq), "sla_attention: pooled q");
    STEP(tdk_sla_pool(c->stream, k->data, S, H, D, blk_k, mean, pk), "sla_attention: pooled k");
    STEP(tdk_sla_select(c->stream, pq, pk, H, nq, nk, D, (int)nsel, sel), "sla_attention: block map");
    STEP(tdk_sla_sparse(c->stream, q->data, k->data, v->data, (float)(1.0 / sqrt((double)D)), S, H, D, sel,
                        (int)nsel, blk_q, blk_k, out->data), "sla_attention: sparse part");
    STEP(cudaMemsetAsync(kv, 0, sizeof(float) * (size_t)(H * D * D + H * D), c->stream), "sla_attention: zero");
    STEP(tdk_sla_kv(c->stream, k->data, v->data, S, H, D, kv, ksum), "sla_attention: phi(k)^T v");
    STEP(tdk_sla_linear(c->stream, q->data, kv, ksum, S, H, D, ol), "sla_attention: linear branch");
#undef STEP
    rc = td_cuda_lt_linear(be, proj_w->data, ol, proj_b && proj_b->dtype == TD_BF16 ? proj_b->data : NULL, 0, proj,
                           S * H, D, D, D);
    if (rc == 0 && proj_b && proj_b->dtype != TD_BF16)
        rc = td_cuda_check(be, tdk_binary(c->stream, TD_K_ADD, proj, S * H * D, td_cuda_vec(proj_b), D, proj),
                           "sla_attention: proj_l bias");
    if (rc == 0)
        rc = td_cuda_check(be, tdk_binary(c->stream, TD_K_ADD, out->data, S * H * D,
                                          (td_kvec){ proj, TD_K_BF16 }, S * H * D, out->data),
                           "sla_attention: sum");
out:
    c->arena_used = mark;
    return rc;
}
