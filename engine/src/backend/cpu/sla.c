/*
 * SLA, sparse-linear attention, as TurboDiffusion runs it on the CPU in f32.
 *
 * Facts from thu-ml/TurboDiffusion (turbodiffusion/SLA/core.py, utils.py,
 * kernel.py; turbodiffusion/inference/modify_model.py):
 *  - SparseLinearAttention.forward takes q, k, v as [B, L, H, D] (it
 *    transposes to [B, H, L, D]); self-attention, so Lq = Lk = S.
 *  - get_block_map: k_s = k - mean_L(k) ("smooth-k"); pooled q = mean of q
 *    over each BLKQ block, pooled k = mean of k_s over each BLKK block, the
 *    ragged last block divided by its true row count (mean_pool's nx);
 *    score = pooled_q @ pooled_k^T, unscaled; per query block the
 *    topk = min(K, int(topk_ratio * K)) highest-scoring key blocks
 *    (torch.topk, unsorted), K = ceil(L / BLKK).
 *  - _attn_fwd: softmax(q k^T * D^-0.5) v over the selected blocks only,
 *    flash-style, keys past L masked to -inf; o_s = acc / l.
 *  - linear branch: feature map softmax over D applied to the UNsmoothed q
 *    and k (tie_feature_map_qk), over ALL keys, not only the unselected ones:
 *    o_l = (phi_q @ (phi_k^T v)) / (1e-5 + phi_q . sum_L phi_k).
 *  - proj_l = nn.Linear(D, D) with weight AND bias, kept f32 ("-quant"
 *    checkpoints skip it); out = o_s + proj_l(o_l).
 *  - TurboDiffusion builds SLA with BLKQ=128, BLKK=64 (modify_model.py) and
 *    SageSLA with 64/128 on sm90, 128/64 elsewhere; the Triton kernel asserts
 *    BLOCK_N == 64. CLI default topk 0.1 (wan2.1_t2v_infer.py --sla_topk).
 *  - SageSLA computes the same function with int8 q/k (k smoothed by its
 *    mean, which softmax ignores) and fp8/f16 P.V; GPU paths compute in bf16.
 * Differences from thu-ml/SLA (sparse_linear_attention/core.py): that repo
 * takes [B, H, L, D] and defaults BLKQ = BLKK = 64; the math is identical.
 * Where we differ from upstream, deliberately:
 *  - at least one key block: upstream's int(topk * K) may be 0 (e.g. topk
 *    0.05 with K < 20), which makes the Triton kernel divide 0 by 0 (NaN);
 *  - pooling and scores in f64 so the block choice is not decided by
 *    rounding (smoothing then changes no choice: it shifts every score of a
 *    query block by the same pooled_q . mean(k); we keep it as upstream); ties go to the lower block index; the selected blocks are
 *    visited in ascending order.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "attention_amx.h"
#include "cpu.h"
#include "cpu_math.h"
#include "sla.h"

/* Rows of phi(k) widened per sgemm when summing phi(k)^T v. */
#define SLA_KV_CHUNK 256

typedef struct sla_job {
    const float *q, *k, *v;
    float *out;
    int64_t S, ld;            /* sequence length, row stride H * D */
    int H, D, bq, bk, nq, nk, nsel;
    float scale;
    const float *w, *b;       /* proj_l, f32 */
    double *pk;               /* [H, nk, D] pooled smoothed keys */
    float *kvw;               /* [H, D, D] (sum phi(k)^T v) proj_l^T */
    float *ksum;              /* [H, D] sum phi(k) */
    td_att_path path;         /* attention's tiles for the sparse part */
    td_att_problem amx;       /* on AMX: q, k, v, out as attention_amx.h takes them, */
    void *packed;             /* one head's k and v packed (the backend's scratch), */
    int64_t first;            /* and the first work item of the head being run */
    atomic_int nomem;
} sla_job;

/* Softmax of one row of n into y, on the vectorised row helpers (libm's
 * exp per element was a twentieth of the op). */
static void softmax_row(const float *x, float *y, int n)
{
    float inv;
    memcpy(y, x, sizeof(float) * n);
    td_row_exp_sub(y, n, td_row_max(y, n));
    inv = 1.0f / td_row_sum(y, n);
    for (int i = 0; i < n; i++)
        y[i] *= inv;
}

/* Per head: pooled smoothed keys, (phi(k)^T v) proj_l^T and sum phi(k).
 * proj_l is linear, so it is folded into phi(k)^T v once per head rather
 * than applied to every query row's o_l. */
static void sla_head_stats(void *arg, int64_t h0, int64_t h1)
{
    sla_job *j = arg;
    const int D = j->D;
    double *mean = malloc(sizeof(double) * D);
    double *ks = malloc(sizeof(double) * D);
    float *phi = malloc(sizeof(float) * SLA_KV_CHUNK * D);
    float *kv = malloc(sizeof(float) * D * D);

    if (!mean || !ks || !phi || !kv) {
        atomic_store(&j->nomem, 1);
        goto out;
    }
    for (int64_t h = h0; h < h1; h++) {
        const float *kh = j->k + h * D, *vh = j->v + h * D;
        double *pk = j->pk + h * j->nk * D;
        float *ksum = j->ksum + h * D;

        memset(mean, 0, sizeof(double) * D);
        for (int64_t s = 0; s < j->S; s++)
            for (int d = 0; d < D; d++)
                mean[d] += kh[s * j->ld + d];
        for (int d = 0; d < D; d++)
            mean[d] /= (double)j->S;
        for (int b = 0; b < j->nk; b++) {
            int64_t s0 = (int64_t)b * j->bk, s1 = s0 + j->bk < j->S ? s0 + j->bk : j->S;
            double *row = pk + (int64_t)b * D;
            memset(row, 0, sizeof(double) * D);
            for (int64_t s = s0; s < s1; s++)
                for (int d = 0; d < D; d++)
                    row[d] += kh[s * j->ld + d];
            for (int d = 0; d < D; d++)
                row[d] = row[d] / (double)(s1 - s0) - mean[d];
        }

        memset(ks, 0, sizeof(double) * D);
        for (int64_t s0 = 0; s0 < j->S; s0 += SLA_KV_CHUNK) {
            int n = (int)(j->S - s0 < SLA_KV_CHUNK ? j->S - s0 : SLA_KV_CHUNK);
            for (int r = 0; r < n; r++) {
                softmax_row(kh + (s0 + r) * j->ld, phi + (int64_t)r * D, D);
                for (int d = 0; d < D; d++)
                    ks[d] += phi[(int64_t)r * D + d];
            }
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, D, n, 1.0f,
                        phi, D, vh + s0 * j->ld, (int)j->ld, s0 ? 1.0f : 0.0f, kv, D);
        }
        for (int d = 0; d < D; d++)
            ksum[d] = (float)ks[d];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, D, D, D, 1.0f, kv, D, j->w, D,
                    0.0f, j->kvw + h * D * D, D);
    }
out:
    free(mean);
    free(ks);
    free(phi);
    free(kv);
}

/* The value of rank k (0 = largest) among x[0, n), no NaN in x; x is
 * reordered. Quickselect: O(n) where the old nsel passes were O(nsel n). */
static double kth_largest(double *x, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        double p = x[lo + (hi - lo) / 2], t;
        int i = lo, jj = hi;
        while (i <= jj) {
            while (x[i] > p)
                i++;
            while (x[jj] < p)
                jj--;
            if (i <= jj) {
                t = x[i];
                x[i++] = x[jj];
                x[jj--] = t;
            }
        }
        if (k <= jj)
            hi = jj;
        else if (k >= i)
            lo = i;
        else
            return p;   /* x(jj, i) all equal p */
    }
    return x[k];
}

/* The nsel best key blocks for pooled query pq, ascending block index. */
static void select_blocks(const sla_job *j, const double *pk, const double *pq,
                          double *score, double *tmp, unsigned char *taken, int *sel)
{
    const int D = j->D;
    int b = 0, nan = 0;

    /* Eight blocks at a time: each score is still summed over d in order
     * from 0 (the same bits), but eight chains run at once instead of one
     * add waiting on the last. */
    for (; b + 8 <= j->nk; b += 8) {
        const double *p = pk + (int64_t)b * D;
        double acc[8] = { 0 };
        for (int d = 0; d < D; d++)
            for (int u = 0; u < 8; u++)
                acc[u] += pq[d] * p[(int64_t)u * D + d];
        for (int u = 0; u < 8; u++)
            score[b + u] = acc[u];
    }
    for (; b < j->nk; b++) {
        double s = 0;
        for (int d = 0; d < D; d++)
            s += pq[d] * pk[(int64_t)b * D + d];
        score[b] = s;
    }
    for (b = 0; b < j->nk; b++)
        nan |= isnan(score[b]);
    if (nan) {
        /* NaN compares false, so the pass order decides what NaN input
         * selects: kept as it was, pass by pass. */
        memset(taken, 0, (size_t)j->nk);
        for (int i = 0; i < j->nsel; i++) {
            int best = -1;
            for (b = 0; b < j->nk; b++)
                if (!taken[b] && (best < 0 || score[b] > score[best]))
                    best = b;
            taken[best] = 1;
        }
        for (int i = 0, b2 = 0; b2 < j->nk; b2++)
            if (taken[b2])
                sel[i++] = b2;
        return;
    }
    /* The nsel highest scores, ties to the lower block: all above the
     * nsel-th value, then the first blocks equal to it. */
    memcpy(tmp, score, sizeof(double) * j->nk);
    double th = kth_largest(tmp, j->nk, j->nsel - 1);
    int above = 0, i = 0;
    for (b = 0; b < j->nk; b++)
        above += score[b] > th;
    for (b = 0; b < j->nk; b++)
        if (score[b] > th || (score[b] == th && above < j->nsel)) {
            above += score[b] == th;
            sel[i++] = b;
        }
}

typedef struct sla_scratch {
    double *pq, *score, *tmp;
    unsigned char *taken;
    int *sel;
    float *att, *phi, *ol;
} sla_scratch;

static void sla_scratch_free(sla_scratch *t)
{
    free(t->pq); free(t->score); free(t->tmp); free(t->taken); free(t->sel);
    free(t->att); free(t->phi); free(t->ol);
}

static int sla_scratch_alloc(const sla_job *j, sla_scratch *t)
{
    size_t bq = (size_t)j->bq, D = (size_t)j->D;
    size_t att = j->path == TD_ATT_AMX ? td_cpu_att_amx_tile_bytes(D, D)
                                        : sizeof(float) * td_cpu_att_blocks_floats(j->path, j->bq, j->D);
    t->pq = malloc(sizeof(double) * D);
    t->score = malloc(sizeof(double) * j->nk);
    t->tmp = malloc(sizeof(double) * j->nk);
    t->taken = malloc((size_t)j->nk);
    t->sel = malloc(sizeof(int) * j->nsel);
    t->att = aligned_alloc(64, (att + 63) / 64 * 64);
    t->phi = malloc(sizeof(float) * bq * D);
    t->ol = malloc(sizeof(float) * bq * D);
    return t->pq && t->score && t->tmp && t->taken && t->sel && t->att && t->phi && t->ol;
}

/* Adds the linear branch, projected by proj_l, to rows [r0, r0 + nr) of
 * head h of out: phi(q) (phi(k)^T v proj_l^T) / (1e-5 + phi(q) . ksum)
 * + bias. */
static void sla_linear(const sla_job *j, sla_scratch *t, int64_t h, int64_t r0, int nr)
{
    const int D = j->D;
    const float *kvw = j->kvw + h * D * D, *ksum = j->ksum + h * D;

    for (int r = 0; r < nr; r++)
        softmax_row(j->q + (r0 + r) * j->ld + h * D, t->phi + (int64_t)r * D, D);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, D, D, 1.0f,
                t->phi, D, kvw, D, 0.0f, t->ol, D);
    for (int r = 0; r < nr; r++) {
        const float *pr = t->phi + (int64_t)r * D, *lr = t->ol + (int64_t)r * D;
        float *o = j->out + (r0 + r) * j->ld + h * D;
        double den = 0;
        for (int d = 0; d < D; d++)
            den += (double)pr[d] * ksum[d];
        float inv = (float)(1.0 / (1e-5 + den));
        for (int d = 0; d < D; d++)
            o[d] += lr[d] * inv + (j->b ? j->b[d] : 0.0f);
    }
}

/* Work item = (head, query block), numbered from j->first. */
static void sla_blocks(void *arg, int64_t i0, int64_t i1)
{
    sla_job *j = arg;
    sla_scratch t = { 0 };
    const int D = j->D;

    if (!sla_scratch_alloc(j, &t)) {
        atomic_store(&j->nomem, 1);
        sla_scratch_free(&t);
        return;
    }
    for (int64_t i = j->first + i0; i < j->first + i1; i++) {
        int64_t h = i / j->nq, qb = i % j->nq, r0 = qb * j->bq;
        int nr = (int)(j->S - r0 < j->bq ? j->S - r0 : j->bq);

        memset(t.pq, 0, sizeof(double) * D);
        for (int r = 0; r < nr; r++)
            for (int d = 0; d < D; d++)
                t.pq[d] += j->q[(r0 + r) * j->ld + h * D + d];
        for (int d = 0; d < D; d++)
            t.pq[d] /= nr;
        select_blocks(j, j->pk + h * j->nk * D, t.pq, t.score, t.tmp, t.taken, t.sel);

        if (j->path == TD_ATT_AMX)
            td_cpu_att_amx_blocks(&j->amx, h, j->packed, r0, nr, t.sel, j->nsel, j->bk, t.att);
        else
            td_cpu_att_blocks(j->path, j->q, j->k, j->v, j->S, j->H, D, j->scale, h, r0, nr, t.sel,
                              j->nsel, j->bk, j->out, t.att);
        sla_linear(j, &t, h, r0, nr);
    }
    sla_scratch_free(&t);
}

/* The work items on AMX, head by head: the head's k and v packed once
 * into the backend's scratch, then its query blocks. */
static int sla_amx_heads(td_backend *be, sla_job *j)
{
    j->amx = (td_att_problem){ j->q, j->k, j->v, NULL, j->out, j->S, j->S, j->H, j->D, j->D, 0,
                               j->ld, j->ld, j->ld, j->ld, j->scale };
    j->packed = td_cpu_scratch_bytes(be, td_cpu_att_amx_bytes(j->S, j->D, j->D));
    if (!j->packed)
        return be->ctx->err;
    for (int h = 0; h < j->H && !atomic_load(&j->nomem); h++) {
        td_cpu_att_amx_pack(td_cpu_pool(be), &j->amx, h, j->packed);
        j->first = (int64_t)h * j->nq;
        td_pool_for(td_cpu_pool(be), j->nq, 1, sla_blocks, j);
    }
    return 0;
}

size_t td_cpu_sla_workspace(td_backend *be, const td_tensor *q)
{
    if (td_cpu_of(be)->att_path != TD_ATT_AMX || td_numel(q) == 0)
        return 0;
    return td_cpu_scratch_size(td_cpu_att_amx_bytes(q->shape[0], q->shape[2], q->shape[2]));
}

static int check_qkv(td_ctx *ctx, const char *name, const td_tensor *t, const td_tensor *ref)
{
    char a[96], b[96];
    if (t->dtype != TD_F32 || t->ndim != 3 || !td_is_contiguous(t))
        return td_fail(ctx, TD_EINVAL, "sla_attention: %s must be contiguous f32 [S, H, D], got %s",
                       name, td_shape_str(t, a, sizeof(a)));
    if (memcmp(t->shape, ref->shape, sizeof(int64_t) * 3))
        return td_fail(ctx, TD_ESHAPE, "sla_attention: %s %s does not match q %s", name,
                       td_shape_str(t, a, sizeof(a)), td_shape_str(ref, b, sizeof(b)));
    return 0;
}

static int check_args(td_ctx *ctx, const td_tensor *q, const td_tensor *k, const td_tensor *v,
                      const td_tensor *w, const td_tensor *bias, int blk_q, int blk_k,
                      double topk, const td_tensor *out)
{
    char a[96];
    int64_t D;

    TD_TRY(check_qkv(ctx, "q", q, q));
    TD_TRY(check_qkv(ctx, "k", k, q));
    TD_TRY(check_qkv(ctx, "v", v, q));
    TD_TRY(check_qkv(ctx, "out", out, q));
    D = q->shape[2];
    if (q->shape[0] < 1 || q->shape[1] < 1 || D < 1)
        return td_fail(ctx, TD_ESHAPE, "sla_attention: empty q %s", td_shape_str(q, a, sizeof(a)));
    if (q->shape[0] > INT32_MAX || q->shape[1] * D > INT32_MAX)
        return td_fail(ctx, TD_EUNSUPPORTED, "sla_attention: q %s too large",
                       td_shape_str(q, a, sizeof(a)));
    if (out->data == q->data || out->data == k->data || out->data == v->data)
        return td_fail(ctx, TD_EINVAL, "sla_attention: out must not alias q, k or v");
    if ((blk_q != 64 && blk_q != 128) || (blk_k != 64 && blk_k != 128))
        return td_fail(ctx, TD_EINVAL, "sla_attention: block sizes %d/%d (query/key), each must be 64 or 128",
                       blk_q, blk_k);
    if (!(topk > 0.0 && topk <= 1.0))
        return td_fail(ctx, TD_EINVAL, "sla_attention: topk %g outside (0, 1]", topk);
    if (w->ndim != 2 || w->shape[0] != D || w->shape[1] != D || !td_is_contiguous(w))
        return td_fail(ctx, TD_ESHAPE, "sla_attention: proj_l weight %s, expected contiguous [%lld, %lld]",
                       td_shape_str(w, a, sizeof(a)), (long long)D, (long long)D);
    if (bias && (bias->ndim != 1 || bias->shape[0] != D || !td_is_contiguous(bias)))
        return td_fail(ctx, TD_ESHAPE, "sla_attention: proj_l bias %s, expected [%lld]",
                       td_shape_str(bias, a, sizeof(a)), (long long)D);
    if (w->dtype != TD_F32 && w->dtype != TD_F16 && w->dtype != TD_BF16)
        return td_fail(ctx, TD_EUNSUPPORTED, "sla_attention: proj_l weight dtype %s", td_dtype_name(w->dtype));
    if (bias && bias->dtype != TD_F32 && bias->dtype != TD_F16 && bias->dtype != TD_BF16)
        return td_fail(ctx, TD_EUNSUPPORTED, "sla_attention: proj_l bias dtype %s", td_dtype_name(bias->dtype));
    return 0;
}

int td_cpu_sla_attention(td_backend *be, const td_tensor *q, const td_tensor *k,
                         const td_tensor *v, const td_tensor *proj_w, const td_tensor *proj_b,
                         int blk_q, int blk_k, double topk, td_tensor *out)
{
    td_ctx *ctx = be->ctx;
    sla_job j;
    float *wb = NULL;
    int rc = 0;

    TD_TRY(check_args(ctx, q, k, v, proj_w, proj_b, blk_q, blk_k, topk, out));
    memset(&j, 0, sizeof(j));
    j.q = q->data;
    j.k = k->data;
    j.v = v->data;
    j.out = out->data;
    j.S = q->shape[0];
    j.H = (int)q->shape[1];
    j.D = (int)q->shape[2];
    j.ld = (int64_t)j.H * j.D;
    j.bq = blk_q;
    j.bk = blk_k;
    j.nq = (int)((j.S + blk_q - 1) / blk_q);
    j.nk = (int)((j.S + blk_k - 1) / blk_k);
    j.nsel = (int)floor(topk * j.nk);   /* Python's int(topk * K) */
    j.nsel = j.nsel < 1 ? 1 : j.nsel > j.nk ? j.nk : j.nsel;
    j.scale = (float)(1.0 / sqrt((double)j.D));
    j.path = td_cpu_of(be)->att_path;
    atomic_init(&j.nomem, 0);

    /* proj_l widened once: D + D*D floats, next to the activations. */
    wb = malloc(sizeof(float) * ((size_t)j.D * j.D + j.D));
    j.pk = malloc(sizeof(double) * j.H * j.nk * j.D);
    j.kvw = malloc(sizeof(float) * j.H * j.D * j.D);
    j.ksum = malloc(sizeof(float) * j.H * j.D);
    if (!wb || !j.pk || !j.kvw || !j.ksum) {
        rc = td_fail(ctx, TD_ENOMEM, "sla_attention: out of memory for S=%lld H=%d D=%d",
                     (long long)j.S, j.H, j.D);
        goto out;
    }
    td_to_f32(proj_w->dtype, proj_w->data, wb, (size_t)j.D * j.D);
    j.w = wb;
    if (proj_b) {
        td_to_f32(proj_b->dtype, proj_b->data, wb + (size_t)j.D * j.D, (size_t)j.D);
        j.b = wb + (size_t)j.D * j.D;
    }

    /* Small tiles from every pool worker: OpenBLAS must not fan out too. */
    td_cpu_blas_serial();
    td_pool_for(ctx->pool, j.H, 1, sla_head_stats, &j);
    if (!atomic_load(&j.nomem) && j.path == TD_ATT_AMX)
        rc = sla_amx_heads(be, &j);
    else if (!atomic_load(&j.nomem))
        td_pool_for(ctx->pool, (int64_t)j.H * j.nq, 1, sla_blocks, &j);
    if (atomic_load(&j.nomem))
        rc = td_fail(ctx, TD_ENOMEM, "sla_attention: out of memory for block scratch (D=%d)", j.D);
out:
    free(wb);
    free(j.pk);
    free(j.kvw);
    free(j.ksum);
    return rc;
}
