/*
 * LoRA merge at load time (dit/lora.c) on the committed tiny DiTs: the
 * merged values of a low-rank pair and of a diff against a double-precision
 * loop, the tensors left alone, and the errors users see: a key matching no
 * module, a LoRA for another width, malformed files, a W8A8 checkpoint;
 * plus engines that differ only in their LoRAs being distinct in the
 * shared-engine registry. (Bit-exactness against diffusers is the parity
 * tier's tests/parity/test_lora.py.)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "dit/dit.h"
#include "dit/dit_quantize.h"
#include "dit/lora.h"
#include "io/safetensors_write.h"
#include "io/weights.h"

#define TINY_DIT TD_ROOT "/tests/data/pipeline/dit.safetensors"   /* Wan layout, bf16, dim 128 */
#define TINY_PTH TD_ROOT "/tests/data/dit/tiny.pth"

typedef struct st_tensor {
    const char *name;
    int ndim;
    int64_t shape[2];
    const float *data;
} st_tensor;

static int fill(void *opaque, int i, void *dst, size_t nbytes)
{
    memcpy(dst, ((const st_tensor *)opaque)[i].data, nbytes);
    return 0;
}

static int write_lora(const char *path, const st_tensor *t, int n)
{
    td_st_item items[8];
    td_ctx ctx;
    td_ctx_init(&ctx);
    for (int i = 0; i < n; i++) {
        items[i] = (td_st_item){ t[i].name, TD_F32, t[i].ndim, { 0 } };
        memcpy(items[i].shape, t[i].shape, sizeof(t[i].shape));
    }
    return td_safetensors_write(&ctx, path, items, n, fill, (void *)t);
}

static float *random_floats(test_rng *r, size_t n, float amp)
{
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; p && i < n; i++)
        p[i] = amp * test_uniform(r);
    return p;
}

static float at(const td_tensor *t, int64_t i)
{
    float v;
    td_to_f32(t->dtype, (const char *)t->data + (size_t)i * td_dtype_size(t->dtype), &v, 1);
    return v;
}

/* Merge path's LoRA into the tiny DiT; rc, and the message in msg. */
static int merge(const char *path, double scale, td_lora_merged **m, td_weights **w, char *msg, size_t size)
{
    td_ctx ctx;
    td_lora l = { path, scale };
    int rc;
    td_ctx_init(&ctx);
    *m = NULL;
    rc = td_weights_open(&ctx, TINY_DIT, w);
    if (rc == 0)
        rc = td_lora_merge(&ctx, *w, &l, 1, m);
    snprintf(msg, size, "%s", rc < 0 ? ctx.errmsg : "");
    return rc;
}

/* kohya names, alpha 2 of rank 4, scale 0.5 into the bf16 q of block 0: each
 * element within bf16's roundings (of the factors, the delta and the sum, as
 * diffusers merges into bf16) of W + 0.5 * (2 / 4) * up . down. */
static void test_pair_merges(const char *dir, test_rng *r)
{
    char path[512], msg[512];
    float alpha = 2.0f, *down = random_floats(r, 4 * 128, 0.5f), *up = random_floats(r, 128 * 4, 0.5f);
    st_tensor t[] = {
        { "lora_unet_blocks_0_self_attn_q.lora_down.weight", 2, { 4, 128 }, down },
        { "lora_unet_blocks_0_self_attn_q.lora_up.weight", 2, { 128, 4 }, up },
        { "lora_unet_blocks_0_self_attn_q.alpha", 0, { 0 }, &alpha },
    };
    td_lora_merged *m;
    td_weights *w = NULL;
    snprintf(path, sizeof(path), "%s/pair.safetensors", dir);
    CHECK(write_lora(path, t, 3) == 0, "writing %s", path);
    CHECK(merge(path, 0.5, &m, &w, msg, sizeof(msg)) == 0, "merge: %s", msg);
    if (m) {
        const td_tensor *base = td_weights_find(w, "blocks.0.self_attn.q.weight");
        const td_tensor *got = td_lora_merged_find(m, base);
        int bad = 0;
        CHECK(td_lora_merged_count(m) == 1, "%d tensors merged, expected 1", td_lora_merged_count(m));
        CHECK(got && got->dtype == TD_BF16, "no bf16 merged copy of the q weight");
        CHECK(!td_lora_merged_find(m, td_weights_find(w, "blocks.0.self_attn.k.weight")),
              "the k weight was changed");
        for (int64_t i = 0; got && i < 128 * 128; i++) {
            double want = at(base, i), d = 0, mag = 0;
            for (int j = 0; j < 4; j++) {
                d += (double)up[(i / 128) * 4 + j] * down[j * 128 + i % 128];
                mag += fabs((double)up[(i / 128) * 4 + j] * down[j * 128 + i % 128]);
            }
            want += 0.5 * 0.5 * d;
            bad += fabs(at(got, i) - want) > (fabs(want) + 3 * 0.25 * mag) / 256 + 1e-6;
        }
        CHECK(bad == 0, "%d merged elements off W + scale * alpha / rank * B A by more than bf16's rounding", bad);
    }
    td_lora_merged_free(&m);
    td_weights_close(&w);
    free(down);
    free(up);
}

/* A diff on a norm and a diff_b (ComfyUI's names) into bf16 tensors:
 * bf16(W + bf16(bf16(diff) * scale)), as PEFT adds a bf16 adapter's bias. */
static void test_diffs_merge(const char *dir, test_rng *r)
{
    char path[512], msg[512];
    float *d = random_floats(r, 128, 1), *db = random_floats(r, 128, 1);
    st_tensor t[] = {
        { "diffusion_model.blocks.0.norm3.diff", 1, { 128 }, d },
        { "diffusion_model.blocks.0.cross_attn.o.diff_b", 1, { 128 }, db },
    };
    td_lora_merged *m;
    td_weights *w = NULL;
    snprintf(path, sizeof(path), "%s/diff.safetensors", dir);
    CHECK(write_lora(path, t, 2) == 0, "writing %s", path);
    CHECK(merge(path, -1.5, &m, &w, msg, sizeof(msg)) == 0, "merge: %s", msg);
    for (int k = 0; m && k < 2; k++) {
        const char *name = k ? "blocks.0.cross_attn.o.bias" : "blocks.0.norm3.weight";
        const td_tensor *base = td_weights_find(w, name), *got = td_lora_merged_find(m, base);
        const float *src = k ? db : d;
        int bad = 0;
        for (int64_t i = 0; got && i < 128; i++) {
            float d = td_bf16_to_f32(td_f32_to_bf16(td_bf16_to_f32(td_f32_to_bf16(src[i])) * -1.5f));
            bad += at(got, i) != td_bf16_to_f32(td_f32_to_bf16(at(base, i) + d));
        }
        CHECK(got && bad == 0, "%s: %d elements are not bf16(W + bf16(bf16(diff) * scale))", name, bad);
    }
    td_lora_merged_free(&m);
    td_weights_close(&w);
    free(d);
    free(db);
}

static void expect_error(const char *dir, const char *file, const st_tensor *t, int n, int code,
                         const char *const *words)
{
    char path[512], msg[512];
    td_lora_merged *m;
    td_weights *w = NULL;
    int rc;
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    if (t)
        CHECK(write_lora(path, t, n) == 0, "writing %s", path);
    rc = merge(path, 1.0, &m, &w, msg, sizeof(msg));
    CHECK(rc == code && !m, "%s: rc %d, expected %d (%s)", file, rc, code, msg);
    for (int i = 0; words[i]; i++)
        CHECK(strstr(msg, words[i]), "%s: the message '%s' does not name '%s'", file, msg, words[i]);
    td_lora_merged_free(&m);
    td_weights_close(&w);
}

static void test_errors(const char *dir)
{
    static float z[4 * 136];
    char path[512];
    FILE *f;
    st_tensor nomatch[] = {
        { "diffusion_model.blocks.0.self_attn.q.lora_down.weight", 2, { 4, 128 }, z },
        { "diffusion_model.blocks.0.self_attn.q.lora_up.weight", 2, { 128, 4 }, z },
        { "diffusion_model.blocks.0.self_attn.x.lora_down.weight", 2, { 4, 128 }, z },
        { "diffusion_model.blocks.0.self_attn.x.lora_up.weight", 2, { 128, 4 }, z },
    };
    st_tensor past_last_block[] = { { "transformer.blocks.7.attn1.to_q.lora_A.weight", 2, { 4, 128 }, z },
                                    { "transformer.blocks.7.attn1.to_q.lora_B.weight", 2, { 128, 4 }, z } };
    st_tensor wide[] = { { "transformer.blocks.0.attn1.to_k.lora_A.weight", 2, { 4, 136 }, z },
                         { "transformer.blocks.0.attn1.to_k.lora_B.weight", 2, { 136, 4 }, z } };
    st_tensor wide_up[] = { { "transformer.blocks.0.attn1.to_k.lora_A.weight", 2, { 4, 128 }, z },
                            { "transformer.blocks.0.attn1.to_k.lora_B.weight", 2, { 136, 4 }, z } };
    st_tensor no_up[] = { { "transformer.blocks.0.attn1.to_k.lora_A.weight", 2, { 4, 128 }, z } };
    st_tensor not_lora[] = { { "blocks.0.self_attn.q.weight", 2, { 4, 128 }, z } };
    st_tensor bad_diff[] = { { "diffusion_model.blocks.0.norm3.diff", 1, { 136 }, z } };

    expect_error(dir, "nomatch.safetensors", nomatch, 4, TD_ENOTFOUND,
                 (const char *const[]){ "diffusion_model.blocks.0.self_attn.x.lora_down.weight", "matches no module", NULL });
    expect_error(dir, "past.safetensors", past_last_block, 2, TD_ENOTFOUND,
                 (const char *const[]){ "transformer.blocks.7.attn1.to_q.lora_A.weight", NULL });
    expect_error(dir, "wide.safetensors", wide, 2, TD_ESHAPE,
                 (const char *const[]){ "wide.safetensors", "transformer.blocks.0.attn1.to_k.lora_A.weight",
                                        "[4,136]", "[128,128]", "[rank, 128]", NULL });
    expect_error(dir, "wide_up.safetensors", wide_up, 2, TD_ESHAPE,
                 (const char *const[]){ "lora_B.weight", "[136,4]", "[128, 4]", NULL });
    expect_error(dir, "no_up.safetensors", no_up, 1, TD_EFORMAT,
                 (const char *const[]){ "lora_A.weight", "no matching up", NULL });
    expect_error(dir, "not_lora.safetensors", not_lora, 1, TD_EFORMAT,
                 (const char *const[]){ "blocks.0.self_attn.q.weight", "not a LoRA tensor", NULL });
    expect_error(dir, "bad_diff.safetensors", bad_diff, 1, TD_ESHAPE,
                 (const char *const[]){ "norm3.diff", "[136]", "[128]", NULL });
    snprintf(path, sizeof(path), "%s/garbage.safetensors", dir);
    f = fopen(path, "wb");
    if (f) {
        fputs("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": [1, 2", f);
        fclose(f);
    }
    expect_error(dir, "garbage.safetensors", NULL, 0, TD_EFORMAT, (const char *const[]){ "garbage", NULL });
    expect_error(dir, "absent.safetensors", NULL, 0, TD_EIO, (const char *const[]){ "absent", NULL });
}

/* A W8A8 checkpoint refuses LoRAs, saying what to do instead. */
static void test_quantized_refused(const char *dir)
{
    char qpath[512], lpath[512];
    static float z[4 * 128];
    st_tensor t[] = { { "transformer.blocks.0.attn1.to_q.lora_A.weight", 2, { 4, 32 }, z },
                      { "transformer.blocks.0.attn1.to_q.lora_B.weight", 2, { 32, 4 }, z } };
    td_ctx ctx;
    td_weights *w = NULL, *wq = NULL;
    td_backend *be = NULL;
    td_dit *dit = NULL;
    td_lora l = { lpath, 1.0 };
    td_dit_opts opts = { 2, &l, 1 };
    int rc;
    td_ctx_init(&ctx);
    snprintf(qpath, sizeof(qpath), "%s/quant.safetensors", dir);
    snprintf(lpath, sizeof(lpath), "%s/q_lora.safetensors", dir);
    CHECK(write_lora(lpath, t, 2) == 0, "writing %s", lpath);
    rc = td_weights_open(&ctx, TINY_PTH, &w);
    if (rc == 0)
        rc = td_dit_quantize(&ctx, w, qpath, NULL);
    if (rc == 0)
        rc = td_weights_open(&ctx, qpath, &wq);
    if (rc == 0)
        rc = td_backend_cpu_create(&ctx, 0, &be);
    CHECK(rc == 0, "setting up the W8A8 DiT: %s", ctx.errmsg);
    if (rc == 0) {
        rc = td_dit_load(&ctx, be, wq, &opts, &dit);
        CHECK(rc == TD_EUNSUPPORTED && !dit, "a W8A8 DiT with a LoRA loaded (rc %d)", rc);
        CHECK(strstr(ctx.errmsg, "W8A8") && strstr(ctx.errmsg, "turbodiff quantize") &&
              strstr(ctx.errmsg, "lora-merge"), "the message '%s' does not say what to do", ctx.errmsg);
    }
    td_dit_free(&dit);
    td_backend_destroy(&be);
    td_weights_close(&wq);
    td_weights_close(&w);
    unlink(qpath);
}

static td_engine *open_with(const td_lora *loras, int n)
{
    td_engine_config cfg;
    td_engine *eng = NULL;
    td_error err = { 0 };
    td_engine_config_default(&cfg);
    cfg.model_dir = TD_ROOT "/tests/data/pipeline";
    cfg.device = "cpu";
    cfg.log_level = TD_LOG_ERROR;
    cfg.loras = loras;
    cfg.n_loras = n;
    CHECK(td_engine_open(&cfg, &eng, &err) == 0, "engine open: %s", err.msg);
    return eng;
}

static int open_manifest(const char *dir, const char *lora_json, td_engine **eng, td_error *err)
{
    char path[512];
    td_engine_config cfg;
    FILE *f;
    snprintf(path, sizeof(path), "%s/turbodiff.json", dir);
    f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\"dit\": \"%s\", \"vae\": \"%s\", \"t5\": \"%s\", \"tokenizer\": \"%s\", \"lora\": %s}",
            TINY_DIT, TD_ROOT "/tests/data/vae/vae_wan.pth", TD_ROOT "/tests/data/pipeline/umt5.safetensors",
            TD_ROOT "/tests/data/text/spiece.model", lora_json);
    fclose(f);
    td_engine_config_default(&cfg);
    cfg.model_dir = dir;
    cfg.device = "cpu";
    cfg.log_level = TD_LOG_ERROR;
    return td_engine_open(&cfg, eng, err);
}

/* turbodiff.json's "lora" (relative to the directory) is the same LoRA as
 * the API's: one engine for both; a malformed entry is an error naming it. */
static void test_manifest(const char *dir, td_engine *same)
{
    td_engine *eng = NULL;
    td_error err = { 0 };
    CHECK(open_manifest(dir, "[{\"file\": \"diff.safetensors\", \"scale\": 0.5}]", &eng, &err) == 0,
          "manifest with a lora: %s", err.msg);
    CHECK(eng && eng == same, "the manifest's LoRA made another engine than the API's");
    td_engine_release(&eng);
    CHECK(open_manifest(dir, "[{\"file\": \"diff.safetensors\", \"weight\": 2}]", &eng, &err) == TD_EFORMAT &&
          strstr(err.msg, "\"lora\""), "a bad lora entry: '%s'", err.msg);
    td_engine_release(&eng);
}

/* Same files, other LoRAs (or scales): another engine; the same: shared. */
static void test_registry(const char *dir)
{
    char path[512];
    td_lora a = { path, 1.0 }, b = { path, 0.5 };
    td_engine *plain, *la, *la2, *lb;
    snprintf(path, sizeof(path), "%s/diff.safetensors", dir);
    plain = open_with(NULL, 0);
    la = open_with(&a, 1);
    la2 = open_with(&a, 1);
    lb = open_with(&b, 1);
    CHECK(plain && la && lb && plain != la && la != lb, "engines that differ in their LoRAs were shared");
    CHECK(la && la == la2, "two opens with the same LoRA did not share one engine");
    test_manifest(dir, lb);
    td_engine_release(&lb);
    td_engine_release(&la2);
    td_engine_release(&la);
    td_engine_release(&plain);
}

int main(void)
{
    char dir[] = "/tmp/td_lora_XXXXXX";
    test_rng r = test_rng_seeded();
    if (!mkdtemp(dir))
        return 1;
    test_pair_merges(dir, &r);
    test_diffs_merge(dir, &r);
    test_errors(dir);
    test_quantized_refused(dir);
    test_registry(dir);
    {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
    return check_summary();
}
