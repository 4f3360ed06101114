/*
 * turbodiff's W8A8 checkpoint quantizer (dit/dit_quantize.c) on the committed
 * tiny DiT (tests/data/dit/tiny.pth, Wan layout with "net." prefix): every
 * block Linear becomes int8_weight + scale equal to a naive per-128x128-block
 * quantizer written here from TurboDiffusion's definition, every other
 * tensor is copied byte for byte, the result loads as a W8A8 DiT whose
 * forward stays near the float model's; plus the safetensors writer's round
 * trip and the errors of both.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/pool.h"
#include "dit/dit.h"
#include "dit/dit_quantize.h"
#include "io/npy.h"
#include "io/safetensors_write.h"
#include "io/weights.h"

#define DIR TD_ROOT "/tests/data/dit/"
#define FIXTURE_T 737.5

/* TurboDiffusion's quantizer (turbodiffusion/ops quant kernel) on one block:
 * amax = max(1e-8, max |w|), q = round-half-even(w * (128 / amax)) saturated,
 * scale = amax / 128, all in f32. */
static void naive_quant(const float *w, int64_t n, int64_t k, int8_t *q, float *scale)
{
    int64_t nkb = (k + 127) / 128;
    for (int64_t bn = 0; bn < (n + 127) / 128; bn++)
        for (int64_t bk = 0; bk < nkb; bk++) {
            float amax = 1e-8f, mult;
            for (int64_t r = bn * 128; r < n && r < bn * 128 + 128; r++)
                for (int64_t c = bk * 128; c < k && c < bk * 128 + 128; c++)
                    amax = fabsf(w[r * k + c]) > amax ? fabsf(w[r * k + c]) : amax;
            mult = 128.0f / amax;
            scale[bn * nkb + bk] = amax / 128.0f;
            for (int64_t r = bn * 128; r < n && r < bn * 128 + 128; r++)
                for (int64_t c = bk * 128; c < k && c < bk * 128 + 128; c++) {
                    float v = nearbyintf(w[r * k + c] * mult);
                    q[r * k + c] = (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
                }
        }
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* Every tensor of the quantized file against the float one. */
static void check_tensors(const td_weights *in, const td_weights *q)
{
    int n_int8 = 0, n_scale = 0, copies_ok = 1, quant_ok = 1;
    for (int i = 0; i < td_weights_count(q); i++) {
        const char *name = td_weights_name(q, i);
        const td_tensor *t = td_weights_tensor(q, i);
        char base[256];
        if (ends_with(name, ".int8_weight")) {
            const td_tensor *w, *s;
            size_t nb = strlen(name) - strlen(".int8_weight");
            int8_t *qq = malloc((size_t)td_numel(t) + 1);
            float *ss;
            snprintf(base, sizeof(base), "%.*s.weight", (int)nb, name);
            w = td_weights_find(in, base);
            ss = malloc(sizeof(float) * (size_t)(w && w->ndim == 2 ? ((w->shape[0] + 127) / 128) *
                                                 ((w->shape[1] + 127) / 128) + 1 : 1));
            snprintf(base, sizeof(base), "%.*s.scale", (int)nb, name);
            s = td_weights_find(q, base);
            n_int8++;
            if (!w || !s || !qq || !ss || t->dtype != TD_I8 || s->dtype != TD_F32 || w->dtype != TD_F32 ||
                t->shape[0] != w->shape[0] || t->shape[1] != w->shape[1] ||
                s->shape[0] != (w->shape[0] + 127) / 128 || s->shape[1] != (w->shape[1] + 127) / 128) {
                quant_ok = 0;
            } else {
                naive_quant(w->data, w->shape[0], w->shape[1], qq, ss);
                quant_ok &= !memcmp(qq, t->data, (size_t)td_numel(t)) &&
                            !memcmp(ss, s->data, (size_t)td_numel(s) * sizeof(float));
            }
            CHECK(strstr(name, "blocks.") && !strstr(name, "proj_l"), "%s quantized", name);
            free(qq);
            free(ss);
        } else if (ends_with(name, ".scale")) {
            n_scale++;
        } else {
            const td_tensor *src = td_weights_find(in, name);
            copies_ok &= src && src->dtype == t->dtype && td_nbytes(src) == td_nbytes(t) &&
                         !memcmp(src->data, t->data, td_nbytes(t));
        }
    }
    CHECK(n_int8 == 20 && n_scale == 20, "20 block Linears quantized (found %d int8_weight, %d scale)",
          n_int8, n_scale);
    CHECK(quant_ok, "int8 weights and scales equal the naive block quantizer");
    CHECK(copies_ok, "other tensors copied unchanged");
    CHECK(td_weights_count(q) == td_weights_count(in) + 20, "tensor count %d", td_weights_count(q));
}

/* A backend tensor of host's shape holding host. */
static int to_backend(td_backend *be, const td_tensor *host, td_tensor *dev)
{
    TD_TRY(be->ops->tensor_new(be, dev, be->act, host->ndim, host->shape));
    return be->ops->write(be, dev, host);
}

static void check_forward(td_ctx *ctx, td_backend *be, const td_weights *q)
{
    td_dit_opts opts = { .heads = 2 };
    td_dit *dit = NULL;
    td_tensor x = { 0 }, c = { 0 }, ref = { 0 }, out = { 0 }, xd = { 0 }, cd = { 0 }, od = { 0 };
    td_dit_attn full = { TD_DIT_ATTN_FULL, 0 };
    int rc = td_dit_load(ctx, be, q, &opts, &dit);
    CHECK(rc == 0 && td_dit_get_config(dit)->quant, "quantized file loads as W8A8: %s", ctx->errmsg);
    rc = rc ? rc : td_npy_read(ctx, DIR "x.npy", &x);
    rc = rc ? rc : td_npy_read(ctx, DIR "context.npy", &c);
    rc = rc ? rc : td_npy_read(ctx, DIR "out.npy", &ref);
    rc = rc ? rc : td_tensor_new(ctx, &out, TD_F32, 4, ref.shape);
    rc = rc ? rc : to_backend(be, &x, &xd);
    rc = rc ? rc : to_backend(be, &c, &cd);
    rc = rc ? rc : be->ops->tensor_new(be, &od, be->act, 4, ref.shape);
    rc = rc ? rc : td_dit_forward(dit, NULL, &xd, FIXTURE_T, &cd, &full, &od);
    rc = rc ? rc : be->ops->read(be, &od, &out);
    CHECK(rc == 0, "W8A8 forward: %s", ctx->errmsg);
    if (rc == 0) {
        /* int8 rounding of weights and activations: ~1% per linear (see
         * tests/parity/test_quantize.py); a wiring fault is of order 1. */
        double err = rel_l2_ff(out.data, ref.data, (size_t)td_numel(&ref));
        printf("quantized tiny DiT vs the float model: rel L2 %.3g\n", err);
        CHECK(err > 1e-4 && err < 0.1, "W8A8 forward rel L2 %.3g vs float", err);
    }
    be->ops->tensor_free(be, &xd);
    be->ops->tensor_free(be, &cd);
    be->ops->tensor_free(be, &od);
    td_tensor_free(&x);
    td_tensor_free(&c);
    td_tensor_free(&ref);
    td_tensor_free(&out);
    td_dit_free(&dit);
}

static void test_quantize_tiny(td_ctx *ctx, td_backend *be, const char *dir)
{
    char path[512];
    td_weights *in = NULL, *q = NULL;
    int n = 0, rc;
    snprintf(path, sizeof(path), "%s/q.safetensors", dir);
    rc = td_weights_open(ctx, DIR "tiny.pth", &in);
    CHECK(rc == 0, "open tiny.pth: %s", ctx->errmsg);
    if (rc < 0)
        return;
    rc = td_dit_quantize(ctx, in, path, &n);
    CHECK(rc == 0 && n == 20, "quantize: %s (%d linears)", ctx->errmsg, n);
    rc = rc ? rc : td_weights_open(ctx, path, &q);
    if (rc == 0) {
        check_tensors(in, q);
        check_forward(ctx, be, q);
        td_ctx_clear(ctx);
        snprintf(path, sizeof(path), "%s/again.safetensors", dir);
        rc = td_dit_quantize(ctx, q, path, NULL);
        CHECK(rc == TD_EINVAL && strstr(ctx->errmsg, "already quantized") && access(path, F_OK) != 0,
              "already quantized input: %s", ctx->errmsg);
    }
    td_ctx_clear(ctx);
    rc = td_dit_quantize(ctx, in, "/nonexistent-dir/q.safetensors", NULL);
    CHECK(rc == TD_EIO && strstr(ctx->errmsg, "/nonexistent-dir/q.safetensors"), "unwritable: %s", ctx->errmsg);
    td_ctx_clear(ctx);
    td_weights_close(&q);
    td_weights_close(&in);
}

typedef struct rt_data {
    const void *src[3];
} rt_data;

static int rt_fill(void *opaque, int i, void *dst, size_t nbytes)
{
    memcpy(dst, ((rt_data *)opaque)->src[i], nbytes);
    return 0;
}

/* Random f32, bf16 and an empty i8 tensor written and read back. */
static void test_writer_round_trip(td_ctx *ctx, const char *dir)
{
    test_rng r = test_rng_seeded();
    float a[15];
    uint16_t b[4];
    int8_t e[1] = { 0 };
    td_st_item items[3] = {
        { "a.weight", TD_F32, 2, { 3, 5 } }, { "b", TD_BF16, 1, { 4 } }, { "empty", TD_I8, 2, { 0, 7 } },
    };
    rt_data d = { { a, b, e } };
    char path[512];
    td_weights *w = NULL;
    int rc;
    test_fill(&r, a, 15, 3.0f);
    for (int i = 0; i < 4; i++)
        b[i] = td_f32_to_bf16(test_uniform(&r));
    snprintf(path, sizeof(path), "%s/rt.safetensors", dir);
    rc = td_safetensors_write(ctx, path, items, 3, rt_fill, &d);
    CHECK(rc == 0, "write: %s", ctx->errmsg);
    rc = rc ? rc : td_weights_open(ctx, path, &w);
    CHECK(rc == 0, "reopen: %s", ctx->errmsg);
    if (rc == 0) {
        const td_tensor *ta = td_weights_find(w, "a.weight"), *tb = td_weights_find(w, "b"),
                        *te = td_weights_find(w, "empty");
        CHECK(ta && ta->dtype == TD_F32 && ta->shape[0] == 3 && ta->shape[1] == 5 &&
              !memcmp(ta->data, a, sizeof(a)), "f32 round trip");
        CHECK(tb && tb->dtype == TD_BF16 && tb->shape[0] == 4 && !memcmp(tb->data, b, sizeof(b)), "bf16 round trip");
        CHECK(te && te->dtype == TD_I8 && te->ndim == 2 && td_numel(te) == 0, "empty tensor round trip");
    }
    td_weights_close(&w);
    td_ctx_clear(ctx);
    items[1].name = "a.weight";
    snprintf(path, sizeof(path), "%s/dup.safetensors", dir);
    rc = td_safetensors_write(ctx, path, items, 3, rt_fill, &d);
    CHECK(rc == TD_EINVAL && strstr(ctx->errmsg, "given twice") && access(path, F_OK) != 0,
          "duplicate name: %s", ctx->errmsg);
    td_ctx_clear(ctx);
}

int main(void)
{
    td_ctx ctx;
    td_backend *be = NULL;
    char dir[] = "/tmp/td_quantize_XXXXXX", path[600];
    td_ctx_init(&ctx);
    CHECK(td_pool_create(&ctx, 2, &ctx.pool) == 0, "pool");
    CHECK(td_backend_cpu_create(&ctx, 0, &be) == 0, "backend: %s", ctx.errmsg);
    CHECK(mkdtemp(dir) != NULL, "temp dir");
    if (be) {
        test_quantize_tiny(&ctx, be, dir);
        test_writer_round_trip(&ctx, dir);
    }
    for (const char *const *f = (const char *const[]){ "q", "rt", NULL }; *f; f++) {
        snprintf(path, sizeof(path), "%s/%s.safetensors", dir, *f);
        remove(path);
    }
    rmdir(dir);
    td_backend_destroy(&be);
    td_pool_destroy(&ctx.pool);
    return check_summary();
}
