/*
 * The umT5 encoder against the committed fixture of tests/data/t5/ (written
 * by tests/parity/gen_umt5_fixture.py from transformers' UMT5EncoderModel):
 * the position buckets, the f32 encoder in transformers' names, the bf16
 * encoder in Wan's names (kept bf16), and the load errors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "backend/backend.h"
#include "io/npy.h"
#include "io/weights.h"
#include "text/umt5.h"

#define DIR TD_ROOT "/tests/data/t5/"

static void test_buckets(void)
{
    td_ctx ctx;
    td_tensor b = { 0 };
    int bad = 0;

    td_ctx_init(&ctx);
    CHECK(td_npy_read(&ctx, DIR "buckets.npy", &b) == 0, "%s", ctx.errmsg);
    if (ctx.err)
        return;
    CHECK(b.dtype == TD_I32 && td_numel(&b) == 1201, "buckets.npy is %s", td_dtype_name(b.dtype));
    for (int64_t i = 0; i < td_numel(&b) && b.dtype == TD_I32; i++) {
        int want = ((const int32_t *)b.data)[i], got = td_umt5_bucket(i - 600, 32, 128);
        if (got != want && bad++ < 5)
            CHECK(0, "rel %lld: bucket %d, transformers %d", (long long)(i - 600), got, want);
    }
    CHECK(bad == 0, "%d buckets differ", bad);
    td_tensor_free(&b);
}

/* Encode ids.npy with the weights of file and compare with the reference rows. */
static void check_encoder(const char *file, const char *ref_file, td_umt5_layout layout,
                          td_dtype wdtype)
{
    td_ctx ctx;
    td_weights *w = NULL;
    td_backend *be = NULL;
    td_umt5 *m = NULL;
    td_tensor ids = { 0 }, ref = { 0 }, enc = { 0 }, out = { 0 };

    td_ctx_init(&ctx);
    if (td_weights_open(&ctx, file, &w) || td_npy_read(&ctx, DIR "ids.npy", &ids) ||
        td_npy_read(&ctx, ref_file, &ref) || td_backend_cpu_create(&ctx, 0, &be) ||
        td_umt5_load(&ctx, be, w, &m)) {
        CHECK(0, "%s: %s", file, ctx.errmsg);
        goto done;
    }
    CHECK(m->layout == layout, "%s: layout %d", file, (int)m->layout);
    CHECK(m->dims.layers == 2 && m->dims.d_model == 32 && m->dims.heads == 2 &&
          m->dims.d_attn == 32 && m->dims.d_ff == 64 && m->dims.vocab == 300 &&
          m->dims.buckets == 32, "%s: dims from shapes", file);
    CHECK(m->layers[1].wo.dtype == wdtype && m->embed.dtype == wdtype,
          "%s: weights widened to %s", file, td_dtype_name(m->layers[1].wo.dtype));
    {
        int n = (int)td_numel(&ids);
        size_t need = td_umt5_scratch_bytes(&m->dims, be->act, n);
        const int64_t shape[2] = { TD_UMT5_TEXT_LEN, m->dims.d_model };
        double err;
        int zeros = 1;

        td_umt5_free(&m, be);
        td_backend_destroy(&be);
        if (td_backend_cpu_create(&ctx, need, &be) || td_umt5_load(&ctx, be, w, &m) ||
            be->ops->tensor_new(be, &enc, be->act, 2, shape) ||
            td_tensor_new(&ctx, &out, TD_F32, 2, shape) ||
            be->ops->fill(be, &enc, NAN)) {   /* the encoder must write every row */
            CHECK(0, "%s: %s", file, ctx.errmsg);
            goto done;
        }
        CHECK(td_umt5_encode(m, be, ids.data, n, &enc) == 0, "%s: %s", file, ctx.errmsg);
        CHECK(be->ops->read(be, &enc, &out) == 0, "%s: %s", file, ctx.errmsg);
        err = rel_l2_ff(out.data, ref.data, (size_t)td_numel(&ref));
        CHECK(err < 1e-5, "%s: rel L2 %.3e vs transformers", file, err);
        printf("%s: rel L2 %.2e over %d tokens\n", file, err, n);
        for (int64_t i = td_numel(&ref); i < td_numel(&out); i++)
            zeros &= ((const float *)out.data)[i] == 0.0f;
        CHECK(zeros, "%s: rows past the %d tokens are not zero", file, n);
    }
done:
    td_tensor_free(&ids);
    td_tensor_free(&ref);
    td_tensor_free(&out);
    if (be)
        be->ops->tensor_free(be, &enc);
    td_umt5_free(&m, be);
    td_backend_destroy(&be);
    td_weights_close(&w);
}

static void expect_load_error(const char *file, int code, const char *needle1, const char *needle2)
{
    td_ctx ctx;
    td_weights *w = NULL;
    td_backend *be = NULL;
    td_umt5 *m = NULL;
    int rc;

    td_ctx_init(&ctx);
    if (td_weights_open(&ctx, file, &w) || td_backend_cpu_create(&ctx, 0, &be)) {
        CHECK(0, "%s: %s", file, ctx.errmsg);
        goto done;
    }
    rc = td_umt5_load(&ctx, be, w, &m);
    CHECK(rc == code && !m, "%s: rc %d, want %d", file, rc, code);
    CHECK(strstr(ctx.errmsg, needle1) && strstr(ctx.errmsg, needle2),
          "%s: message '%s' lacks '%s' / '%s'", file, ctx.errmsg, needle1, needle2);
done:
    td_umt5_free(&m, be);
    td_backend_destroy(&be);
    td_weights_close(&w);
}

/* Ids and outputs the encoder must refuse without touching memory: an id
 * outside the vocabulary is TD_EINVAL naming it and its position, before
 * the embed op sees it. */
static void test_encode_errors(void)
{
    td_ctx ctx;
    td_weights *w = NULL;
    td_backend *be = NULL;
    td_umt5 *m = NULL;
    td_tensor out = { 0 }, host = { 0 };
    int32_t ids[3] = { 1, 2, 300 }, neg[2] = { 5, -1 };
    const int64_t good[2] = { TD_UMT5_TEXT_LEN, 32 }, short_out[2] = { 256, 32 };

    td_ctx_init(&ctx);
    if (td_weights_open(&ctx, DIR "enc_f32.safetensors", &w) ||
        td_backend_cpu_create(&ctx, 1 << 20, &be) || td_umt5_load(&ctx, be, w, &m) ||
        be->ops->tensor_new(be, &out, be->act, 2, short_out)) {
        CHECK(0, "%s", ctx.errmsg);
        goto done;
    }
    CHECK(td_umt5_encode(m, be, ids, 1, &out) == TD_ESHAPE, "[256, 32] output accepted");
    be->ops->tensor_free(be, &out);
    td_ctx_clear(&ctx);
    if (be->ops->tensor_new(be, &out, be->act, 2, good) ||
        td_tensor_new(&ctx, &host, TD_F16, 2, good))
        goto done;
    CHECK(td_umt5_encode(m, be, ids, 1, &host) == TD_ESHAPE, "an f16 output accepted");
    td_ctx_clear(&ctx);
    CHECK(td_umt5_encode(m, be, ids, 3, &out) == TD_EINVAL && strstr(ctx.errmsg, "id 300") &&
          strstr(ctx.errmsg, "position 2") && strstr(ctx.errmsg, "umt5"),
          "id 300 of a 300-word vocabulary: %s", ctx.errmsg);
    td_ctx_clear(&ctx);
    CHECK(td_umt5_encode(m, be, neg, 2, &out) == TD_EINVAL && strstr(ctx.errmsg, "id -1") &&
          strstr(ctx.errmsg, "position 1"), "id -1: %s", ctx.errmsg);
    td_ctx_clear(&ctx);
    CHECK(td_umt5_encode(m, be, ids, 0, &out) == TD_EINVAL, "no ids accepted");
    td_ctx_clear(&ctx);
    CHECK(td_umt5_encode(m, be, ids, TD_UMT5_TEXT_LEN + 1, &out) == TD_EINVAL, "513 ids accepted");
    td_ctx_clear(&ctx);
    CHECK(td_umt5_encode(m, be, ids, 2, &out) == 0, "the same encoder after the errors: %s",
          ctx.errmsg);
done:
    td_tensor_free(&host);
    if (be)
        be->ops->tensor_free(be, &out);
    td_umt5_free(&m, be);
    td_backend_destroy(&be);
    td_weights_close(&w);
}

int main(void)
{
    test_buckets();
    check_encoder(DIR "enc_f32.safetensors", DIR "out_f32.npy", TD_UMT5_LAYOUT_HF, TD_F32);
    check_encoder(DIR "enc_bf16.pth", DIR "out_bf16.npy", TD_UMT5_LAYOUT_WAN, TD_BF16);
    expect_load_error(DIR "bad_missing.safetensors", TD_ENOTFOUND, "bad_missing.safetensors",
                      "encoder.block.1.layer.1.DenseReluDense.wo.weight");
    expect_load_error(DIR "bad_shape.safetensors", TD_ESHAPE, "bad_shape.safetensors",
                      "encoder.block.1.layer.0.SelfAttention.k.weight");
    expect_load_error(TD_ROOT "/tests/data/weights/all_dtypes.safetensors", TD_EFORMAT,
                      "all_dtypes.safetensors", "not a umT5 encoder");
    test_encode_errors();
    return check_summary();
}
