/*
 * SLA attention (backend/cpu/sla.c) against a naive double-precision loop
 * written from the definition in backend.h: random q/k/v/proj_l, ragged and
 * exact sequence lengths, both block shapes, several topk, on every path
 * this CPU runs attention's tiles on (td_att_path); key blocks with equal
 * scores (ties go to the lower block) and a NaN query row (the rest of its
 * block keeps upstream's pass-by-pass choice); then bad arguments, each of
 * which must fail with a message and leave out alone.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "core/pool.h"

/* Reference: per head, all in double. */
static void sla_naive(const float *q, const float *k, const float *v, const float *w,
                      const float *b, int64_t S, int H, int D, int bq, int bk, double topk,
                      double *out)
{
    int nq = (int)((S + bq - 1) / bq), nk = (int)((S + bk - 1) / bk);
    int nsel = (int)floor(topk * nk);
    double *pk = malloc(sizeof(double) * nk * D), *mean = malloc(sizeof(double) * D);
    double *kv = malloc(sizeof(double) * D * D), *ks = malloc(sizeof(double) * D);
    double *phi = malloc(sizeof(double) * D), *ol = malloc(sizeof(double) * D);
    double *score = malloc(sizeof(double) * nk), *row = malloc(sizeof(double) * S);
    int *taken = malloc(sizeof(int) * nk);

    nsel = nsel < 1 ? 1 : nsel > nk ? nk : nsel;
#define AT(x, s, h, d) ((double)(x)[((int64_t)(s) * H + (h)) * D + (d)])
    for (int h = 0; h < H; h++) {
        for (int d = 0; d < D; d++) {
            mean[d] = 0;
            for (int64_t s = 0; s < S; s++)
                mean[d] += AT(k, s, h, d);
            mean[d] /= (double)S;
        }
        for (int c = 0; c < nk; c++) {
            int64_t s0 = (int64_t)c * bk, s1 = s0 + bk < S ? s0 + bk : S;
            for (int d = 0; d < D; d++) {
                double a = 0;
                for (int64_t s = s0; s < s1; s++)
                    a += AT(k, s, h, d);
                pk[c * D + d] = a / (double)(s1 - s0) - mean[d];
            }
        }
        /* linear branch state over all keys */
        memset(kv, 0, sizeof(double) * D * D);
        memset(ks, 0, sizeof(double) * D);
        for (int64_t s = 0; s < S; s++) {
            double m = -INFINITY, z = 0;
            for (int d = 0; d < D; d++)
                m = fmax(m, AT(k, s, h, d));
            for (int d = 0; d < D; d++)
                z += exp(AT(k, s, h, d) - m);
            for (int d = 0; d < D; d++) {
                phi[d] = exp(AT(k, s, h, d) - m) / z;
                ks[d] += phi[d];
                for (int e = 0; e < D; e++)
                    kv[d * D + e] += phi[d] * AT(v, s, h, e);
            }
        }
        for (int qb = 0; qb < nq; qb++) {
            int64_t r0 = (int64_t)qb * bq, r1 = r0 + bq < S ? r0 + bq : S;
            double pq[256];
            for (int d = 0; d < D; d++) {
                pq[d] = 0;
                for (int64_t s = r0; s < r1; s++)
                    pq[d] += AT(q, s, h, d);
                pq[d] /= (double)(r1 - r0);
            }
            for (int c = 0; c < nk; c++) {
                score[c] = 0;
                for (int d = 0; d < D; d++)
                    score[c] += pq[d] * pk[c * D + d];
                taken[c] = 0;
            }
            for (int i = 0; i < nsel; i++) {
                int best = -1;
                for (int c = 0; c < nk; c++)
                    if (!taken[c] && (best < 0 || score[c] > score[best]))
                        best = c;
                taken[best] = 1;
            }
            for (int64_t r = r0; r < r1; r++) {
                double m = -INFINITY, z = 0, den = 1e-5;
                for (int64_t s = 0; s < S; s++) {
                    row[s] = -INFINITY;
                    if (!taken[s / bk])
                        continue;
                    row[s] = 0;
                    for (int d = 0; d < D; d++)
                        row[s] += AT(q, r, h, d) * AT(k, s, h, d);
                    row[s] /= sqrt((double)D);
                    m = fmax(m, row[s]);
                }
                for (int64_t s = 0; s < S; s++)
                    z += taken[s / bk] ? exp(row[s] - m) : 0;
                double qm = -INFINITY, qz = 0;
                for (int d = 0; d < D; d++)
                    qm = fmax(qm, AT(q, r, h, d));
                for (int d = 0; d < D; d++)
                    qz += exp(AT(q, r, h, d) - qm);
                for (int d = 0; d < D; d++) {
                    phi[d] = exp(AT(q, r, h, d) - qm) / qz;
                    den += phi[d] * ks[d];
                }
                for (int e = 0; e < D; e++) {
                    ol[e] = 0;
                    for (int d = 0; d < D; d++)
                        ol[e] += phi[d] * kv[d * D + e];
                    ol[e] /= den;
                }
                for (int e = 0; e < D; e++) {
                    double o = b ? b[e] : 0;
                    for (int d = 0; d < D; d++)
                        o += ol[d] * w[e * D + d];
                    for (int64_t s = 0; s < S; s++)
                        if (taken[s / bk])
                            o += exp(row[s] - m) / z * AT(v, s, h, e);
                    out[(r * H + h) * D + e] = o;
                }
            }
        }
    }
#undef AT
    free(pk); free(mean); free(kv); free(ks); free(phi); free(ol); free(score); free(row);
    free(taken);
}

typedef struct sla_case {
    int64_t S;
    int H, D, bq, bk;
    double topk;
    int with_bias;
    td_dtype wdtype;
    int ties;          /* k repeats every bk rows: full blocks score alike */
    int64_t nan_row;   /* > 0: q[nan_row - 1, 0, 0] is NaN */
} sla_case;

static void run_case(td_backend *be, test_rng *rng, const sla_case *c)
{
    int64_t n = c->S * c->H * c->D, shape[3] = { c->S, c->H, c->D };
    float *q = malloc(sizeof(float) * n), *k = malloc(sizeof(float) * n);
    float *v = malloc(sizeof(float) * n), *o = malloc(sizeof(float) * n);
    float *w = malloc(sizeof(float) * c->D * c->D), *b = malloc(sizeof(float) * c->D);
    uint16_t *wh = malloc(sizeof(uint16_t) * c->D * c->D);
    double *ref = malloc(sizeof(double) * n);

    test_fill(rng, q, n, 2.0f);
    test_fill(rng, k, n, 2.0f);
    if (c->ties)
        for (int64_t i = (int64_t)c->bk * c->H * c->D; i < n; i++)
            k[i] = k[i - (int64_t)c->bk * c->H * c->D];
    if (c->nan_row)
        q[(c->nan_row - 1) * c->H * c->D] = NAN;
    test_fill(rng, v, n, 1.0f);
    test_fill(rng, w, c->D * c->D, 0.5f);
    test_fill(rng, b, c->D, 0.5f);
    if (c->wdtype == TD_BF16)
        for (int i = 0; i < c->D * c->D; i++) {
            wh[i] = td_f32_to_bf16(w[i]);
            w[i] = td_bf16_to_f32(wh[i]);
        }
    sla_naive(q, k, v, w, c->with_bias ? b : NULL, c->S, c->H, c->D, c->bq, c->bk, c->topk, ref);

    td_tensor tq = td_view(q, TD_F32, 3, shape), tk = td_view(k, TD_F32, 3, shape);
    td_tensor tv = td_view(v, TD_F32, 3, shape), to = td_view(o, TD_F32, 3, shape);
    td_tensor tw = c->wdtype == TD_BF16 ? td_view2(wh, TD_BF16, c->D, c->D)
                                        : td_view2(w, TD_F32, c->D, c->D);
    td_tensor tb = td_view1(b, TD_F32, c->D);
    int rc = be->ops->sla_attention(be, &tq, &tk, &tv, &tw, c->with_bias ? &tb : NULL,
                                  c->bq, c->bk, c->topk, &to);
    CHECK(rc == 0, "S=%lld: %s", (long long)c->S, be->ctx->errmsg);
    if (rc == 0 && c->nan_row) {
        /* That row of head 0 is NaN; compared without it */
        float *row = o + (c->nan_row - 1) * c->H * c->D;
        int all_nan = 1;
        for (int d = 0; d < c->D; d++) {
            all_nan &= isnan(row[d]);
            row[d] = 0.0f;
            ref[(c->nan_row - 1) * c->H * c->D + d] = 0.0;
        }
        CHECK(all_nan, "S=%lld NaN in q row %lld: its output is not all NaN", (long long)c->S,
              (long long)c->nan_row - 1);
    }
    if (rc == 0) {
        double e = rel_l2_fd(o, ref, (size_t)n);
        CHECK(e < 1e-5, "S=%lld H=%d D=%d blk %d/%d topk %g bias %d ties %d nan row %lld: rel L2 %.3g",
              (long long)c->S, c->H, c->D, c->bq, c->bk, c->topk, c->with_bias, c->ties,
              (long long)c->nan_row, e);
    }
    free(q); free(k); free(v); free(o); free(w); free(b); free(wh); free(ref);
}

static void test_values(td_backend *be, test_rng *rng)
{
    static const int64_t lens[] = { 1, 63, 64, 129, 300, 517 };
    static const double topks[] = { 0.05, 0.1, 0.25, 0.5, 1.0 };
    static const int blocks[2][2] = { { 128, 64 }, { 64, 128 } };
    int i = 0;

    for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++)
        for (int bi = 0; bi < 2; bi++)
            for (size_t ti = 0; ti < sizeof(topks) / sizeof(topks[0]); ti++, i++) {
                sla_case c = { lens[li], 2 + i % 2, i % 3 ? 32 : 64, blocks[bi][0],
                               blocks[bi][1], topks[ti], i % 4 != 0,
                               i % 5 == 0 ? TD_BF16 : TD_F32, 0, 0 };
                run_case(be, rng, &c);
            }
    /* Wan head_dim 128 and more blocks than the selection, with ties of no
     * consequence: the case the DiT runs. */
    sla_case big = { 1100, 2, 128, 128, 64, 0.1, 1, TD_F32, 0, 0 };
    run_case(be, rng, &big);
    /* Every full key block alike: which of the tied blocks is kept decides
     * the output (the short last block scores apart). */
    for (int bi = 0; bi < 2; bi++) {
        sla_case tie = { 1100, 2, 32, blocks[bi][0], blocks[bi][1], 0.25, 1, TD_F32, 1, 0 };
        run_case(be, rng, &tie);
    }
    /* A NaN in q makes its block's scores NaN: the choice for that block's
     * other rows is upstream's, pass by pass (the first blocks). */
    for (int bi = 0; bi < 2; bi++) {
        sla_case nan = { 700, 2, 32, blocks[bi][0], blocks[bi][1], 0.25, 1, TD_F32, 0, 140 };
        run_case(be, rng, &nan);
    }
}

static void expect_fail(td_backend *be, int code, const char *what, const td_tensor *q,
                        const td_tensor *k, const td_tensor *v, const td_tensor *w,
                        const td_tensor *b, int bq, int bk, double topk, td_tensor *o)
{
    float before = ((float *)o->data)[0];
    td_ctx_clear(be->ctx);
    int rc = be->ops->sla_attention(be, q, k, v, w, b, bq, bk, topk, o);
    CHECK(rc == code, "%s: rc %d, expected %d", what, rc, code);
    CHECK(strstr(be->ctx->errmsg, "sla_attention") != NULL, "%s: message '%s'", what,
          be->ctx->errmsg);
    CHECK(((float *)o->data)[0] == before, "%s: out written on failure", what);
}

static void test_errors(td_backend *be, test_rng *rng)
{
    enum { S = 70, H = 2, D = 16 };
    static float q[S * H * D], k[S * H * D], v[S * H * D], o[S * H * D], w[D * D], b[D];
    int64_t shape[3] = { S, H, D }, short_shape[3] = { S - 1, H, D };
    td_tensor tq, tk, tv, to, tw, tb, tshort, tw_bad, tb_bad, t4, ti8;

    test_fill(rng, q, S * H * D, 1);
    test_fill(rng, k, S * H * D, 1);
    test_fill(rng, v, S * H * D, 1);
    test_fill(rng, w, D * D, 1);
    test_fill(rng, b, D, 1);
    o[0] = 12345.0f;
    tq = td_view(q, TD_F32, 3, shape);
    tk = td_view(k, TD_F32, 3, shape);
    tv = td_view(v, TD_F32, 3, shape);
    to = td_view(o, TD_F32, 3, shape);
    tw = td_view2(w, TD_F32, D, D);
    tb = td_view1(b, TD_F32, D);
    tshort = td_view(k, TD_F32, 3, short_shape);
    tw_bad = td_view2(w, TD_F32, D, D / 2);
    tb_bad = td_view1(b, TD_F32, D - 1);
    t4 = td_view4(q, TD_F32, 1, S, H, D);
    ti8 = td_view(q, TD_I8, 3, shape);

    expect_fail(be, TD_EINVAL, "topk 0", &tq, &tk, &tv, &tw, &tb, 128, 64, 0.0, &to);
    expect_fail(be, TD_EINVAL, "topk < 0", &tq, &tk, &tv, &tw, &tb, 128, 64, -0.1, &to);
    expect_fail(be, TD_EINVAL, "topk > 1", &tq, &tk, &tv, &tw, &tb, 128, 64, 1.5, &to);
    expect_fail(be, TD_EINVAL, "topk NaN", &tq, &tk, &tv, &tw, &tb, 128, 64, NAN, &to);
    expect_fail(be, TD_EINVAL, "blk_q 32", &tq, &tk, &tv, &tw, &tb, 32, 64, 0.1, &to);
    expect_fail(be, TD_EINVAL, "blk_k 256", &tq, &tk, &tv, &tw, &tb, 128, 256, 0.1, &to);
    expect_fail(be, TD_EINVAL, "blk_k 0", &tq, &tk, &tv, &tw, &tb, 64, 0, 0.1, &to);
    expect_fail(be, TD_ESHAPE, "k shorter", &tq, &tshort, &tv, &tw, &tb, 128, 64, 0.1, &to);
    expect_fail(be, TD_ESHAPE, "proj_l weight shape", &tq, &tk, &tv, &tw_bad, &tb, 128, 64, 0.1, &to);
    expect_fail(be, TD_ESHAPE, "proj_l bias shape", &tq, &tk, &tv, &tw, &tb_bad, 128, 64, 0.1, &to);
    expect_fail(be, TD_EINVAL, "4-D q", &t4, &tk, &tv, &tw, &tb, 128, 64, 0.1, &to);
    expect_fail(be, TD_EINVAL, "int8 q", &ti8, &tk, &tv, &tw, &tb, 128, 64, 0.1, &to);
    expect_fail(be, TD_EINVAL, "out aliases q", &tq, &tk, &tv, &tw, &tb, 128, 64, 0.1, &tq);
    td_ctx_clear(be->ctx);
}

int main(void)
{
    test_rng rng = test_rng_seeded();
    td_ctx ctx;
    td_pool *pool = NULL;
    td_backend *be = NULL;

    td_ctx_init(&ctx);
    CHECK(td_pool_create(&ctx, 2, &pool) == 0, "pool: %s", ctx.errmsg);
    ctx.pool = pool;
    CHECK(td_backend_cpu_create(&ctx, 0, &be) == 0, "backend: %s", ctx.errmsg);
    if (be) {
        for (td_att_path p = TD_ATT_SCALAR; p <= TD_ATT_AMX; p++) {
            if (!td_cpu_att_supported(p))
                continue;
            printf("sla on attention path %d\n", (int)p);
            td_cpu_of(be)->att_path = p;
            test_values(be, &rng);
        }
        td_cpu_of(be)->att_path = td_cpu_att_best(TD_ISA_AMX);
        test_errors(be, &rng);
    }
    td_backend_destroy(&be);
    td_pool_destroy(&pool);
    return check_summary();
}
