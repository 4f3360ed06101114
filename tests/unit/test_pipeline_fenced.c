/*
 * The whole pipeline on the fenced backend (tests/support/fenced_backend.h):
 * every activation and weight in memory that host code cannot touch outside
 * an op. A model, sampler or pipeline line that reads or writes backend
 * memory directly kills this test with a message naming the allocation and
 * the last op. On the f32 variant every frame equals the CPU backend's bit
 * for bit; on the bf16 variant (activations stored as CUDA stores them) the
 * frames stay within the design brief's bf16 bar of the CPU's.
 *
 * Cases: text-to-video with full attention, with SLA (a DiT given random
 * proj_l), with W8A8 (the DiT quantized by td_dit_quantize); image-to-video
 * on the A14B-style expert pair, resident and with low memory; cancel.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "dit/dit_quantize.h"
#include "fenced_backend.h"
#include "io/safetensors_write.h"
#include "io/weights.h"
#include "pipeline/engine.h"
#include "turbodiff.h"

#define W 64
#define H 32
#define FRAMES 5
#define BF16_BAR 3e-2   /* rel L2, after a full sampler run (DESIGN.md) */

/* The engine's factory shape (it names a device; the fence has one). */
static int fenced_f32(td_ctx *ctx, const char *device, size_t arena, td_backend **out)
{
    (void)device;
    return td_backend_fenced_f32_create(ctx, arena, out);
}

static int fenced_bf16(td_ctx *ctx, const char *device, size_t arena, td_backend **out)
{
    (void)device;
    return td_backend_fenced_bf16_create(ctx, arena, out);
}

typedef struct clip {
    float *rgb;             /* FRAMES x H x W x 3 */
    int frames, bad;
    int cancel_at_step;     /* raise cancel when this denoise step is done */
    volatile int cancel;
} clip;

static int on_frame(void *opaque, const td_frame *f)
{
    clip *c = opaque;
    if (f->width != W || f->height != H || f->index != c->frames || f->index >= FRAMES) {
        c->bad++;
        return 1;
    }
    for (int y = 0; y < H; y++)
        memcpy(c->rgb + ((size_t)f->index * H + y) * W * 3,
               (const char *)f->data + y * f->linesize, W * 3 * sizeof(float));
    c->frames++;
    return 0;
}

static void on_progress(void *opaque, const td_progress *p)
{
    clip *c = opaque;
    if (c->cancel_at_step && p->stage == TD_STAGE_DENOISE && p->step == c->cancel_at_step)
        __atomic_store_n(&c->cancel, 1, __ATOMIC_RELAXED);
}

typedef struct image {
    uint8_t rgb[37 * 23 * 3];
} image;

/* What a case generates: text-to-video or, with an image, image-to-video. */
typedef struct want {
    const image *im;
    int attention;
} want;

static int run(td_engine *eng, const want *w, int cancel_at_step, clip *c, td_error *err)
{
    td_job job;
    memset(c, 0, sizeof(*c));
    c->cancel_at_step = cancel_at_step;
    if (!(c->rgb = calloc((size_t)FRAMES * H * W * 3, sizeof(float))))
        return TD_ENOMEM;
    td_job_default(&job);
    job.prompt = "a red circle moves right on a blue background";
    job.width = W;
    job.height = H;
    job.frames = FRAMES;
    job.seed = 11;
    job.attention = w->attention;
    job.topk = 0.5;
    job.frame_format = TD_FRAME_RGBF32;
    if (w->im) {
        job.image = w->im->rgb;
        job.image_width = 37;
        job.image_height = 23;
        job.image_linesize = 37 * 3;
    }
    job.on_frame = on_frame;
    job.on_progress = on_progress;
    job.cancel = &c->cancel;
    job.opaque = c;
    job.error = err;
    return td_job_run(eng, &job);
}

static td_engine *open_on(const char *dir, const char *device, td_backend_factory make, int low_memory)
{
    td_engine_config cfg;
    td_engine *eng = NULL;
    td_error err = { 0 };
    td_engine_config_default(&cfg);
    cfg.model_dir = dir;
    cfg.threads = 2;
    cfg.low_memory = low_memory;
    cfg.device = "cpu";
    if (make)
        td_engine_open_on(&cfg, device, make, &eng, &err);
    else
        td_engine_open(&cfg, &eng, &err);
    CHECK(eng != NULL, "open %s on %s: %s", dir, device, err.msg);
    return eng;
}

static double rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* One case: the CPU's clip, then the fenced f32 (bit for bit) and bf16
 * (within the bar) ones. The CPU's clip goes to *cpu (caller frees). */
static void compare(const char *name, const char *dir, const want *w, int low_memory, clip *cpu)
{
    static const struct { const char *name; td_backend_factory make; } fenced[] = {
        { "fenced-f32", fenced_f32 },
        { "fenced-bf16", fenced_bf16 },
    };
    size_t n = (size_t)FRAMES * H * W * 3;
    td_error err = { 0 };
    td_engine *eng = open_on(dir, "cpu", NULL, low_memory);
    clip ref = { 0 }, got = { 0 };

    if (!eng)
        return;
    CHECK(run(eng, w, 0, &ref, &err) == 0 && ref.frames == FRAMES && !ref.bad,
          "%s on cpu: %d frames: %s", name, ref.frames, err.msg);
    td_engine_release(&eng);
    for (size_t i = 0; i < sizeof(fenced) / sizeof(fenced[0]); i++) {
        eng = open_on(dir, fenced[i].name, fenced[i].make, low_memory);
        if (!eng)
            continue;
        err.msg[0] = '\0';
        CHECK(run(eng, w, 0, &got, &err) == 0 && got.frames == FRAMES && !got.bad,
              "%s on %s: %d frames: %s", name, fenced[i].name, got.frames, err.msg);
        if (i == 0) {
            CHECK(memcmp(got.rgb, ref.rgb, n * sizeof(float)) == 0,
                  "%s: fenced-f32 differs from the cpu backend (rel L2 %.3g)", name,
                  rel_l2(got.rgb, ref.rgb, n));
        } else {
            double e = rel_l2(got.rgb, ref.rgb, n);
            printf("%s: bf16 activations vs cpu f32: rel L2 %.3g\n", name, e);
            CHECK(e < BF16_BAR, "%s: fenced-bf16 rel L2 %.3g vs the cpu is over %.g", name, e, BF16_BAR);
        }
        free(got.rgb);
        got.rgb = NULL;
        td_engine_release(&eng);
    }
    *cpu = ref;
}

/* SLA and W8A8 must really have run: their clips differ from full
 * attention's on the same weights and seed. */
static void expect_differs(const char *what, const clip *a, const clip *b)
{
    CHECK(a->rgb && b->rgb && memcmp(a->rgb, b->rgb, (size_t)FRAMES * H * W * 3 * sizeof(float)),
          "%s gives the same frames as full attention in f32", what);
}

/* A model directory in a fresh temporary folder: the tiny pipeline set with
 * the DiT replaced by dit_path (the VAE, encoder and tokenizer by path). */
static int write_manifest(const char *dir, const char *dit_path)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof(path), "%s/turbodiff.json", dir);
    if (!(f = fopen(path, "w")))
        return -1;
    fprintf(f, "{ \"dit\": \"%s\", \"vae\": \"%s\", \"t5\": \"%s\", \"tokenizer\": \"%s\", "
            "\"size\": \"%dx%d\", \"frames\": %d }\n", dit_path,
            TD_ROOT "/tests/data/vae/vae_wan.pth", TD_ROOT "/tests/data/pipeline/umt5.safetensors",
            TD_ROOT "/tests/data/text/spiece.model", W, H, FRAMES);
    return fclose(f);
}

/* The tiny DiT with an SLA projection proj_l [128, 128] + bias in each
 * block, as TurboDiffusion's SLA checkpoints carry it. */
typedef struct sla_src {
    const td_weights *w;
    const char **names;
    int n_file;
    test_rng *r;
} sla_src;

static int fill_sla(void *opaque, int i, void *dst, size_t nbytes)
{
    sla_src *s = opaque;
    if (i < s->n_file) {
        const td_tensor *t = td_weights_find(s->w, s->names[i]);
        memcpy(dst, t->data, nbytes);
        return 0;
    }
    for (size_t k = 0; k < nbytes / sizeof(float); k++)
        ((float *)dst)[k] = 0.05f * test_uniform(s->r);
    return 0;
}

static int make_sla_dit(td_ctx *ctx, const char *out, test_rng *r)
{
    td_weights *w = NULL;
    td_st_item items[128];
    const char *names[128];
    char extra[4][96];
    int n = 0, rc;

    TD_TRY(td_weights_open(ctx, TD_ROOT "/tests/data/pipeline/dit.safetensors", &w));
    for (int i = 0; i < td_weights_count(w) && n < 120; i++) {
        const td_tensor *t;
        names[n] = td_weights_name(w, i);
        t = td_weights_find(w, names[n]);
        items[n] = (td_st_item){ names[n], t->dtype, t->ndim, { 0 } };
        memcpy(items[n].shape, t->shape, sizeof(t->shape));
        n++;
    }
    for (int b = 0; b < 2; b++) {
        snprintf(extra[2 * b], sizeof(extra[0]), "blocks.%d.self_attn.attn_op.local_attn.proj_l.weight", b);
        snprintf(extra[2 * b + 1], sizeof(extra[0]), "blocks.%d.self_attn.attn_op.local_attn.proj_l.bias", b);
        items[n + 2 * b] = (td_st_item){ extra[2 * b], TD_F32, 2, { 128, 128 } };
        items[n + 2 * b + 1] = (td_st_item){ extra[2 * b + 1], TD_F32, 1, { 128 } };
    }
    {
        sla_src src = { w, names, n, r };
        rc = td_safetensors_write(ctx, out, items, n + 4, fill_sla, &src);
    }
    td_weights_close(&w);
    return rc;
}

static int make_quant_dit(td_ctx *ctx, const char *out)
{
    td_weights *w = NULL;
    int rc;
    TD_TRY(td_weights_open(ctx, TD_ROOT "/tests/data/pipeline/dit.safetensors", &w));
    rc = td_dit_quantize(ctx, w, out, NULL);
    td_weights_close(&w);
    return rc;
}

int main(void)
{
    test_rng r = test_rng_seeded();
    char tmp[] = "/tmp/td_fenced_XXXXXX", sla_dir[600], q_dir[600], path[700];
    image im;
    const want t2v = { NULL, TD_ATTN_FULL }, sla = { NULL, TD_ATTN_SLA }, i2v = { &im, TD_ATTN_FULL };
    clip full = { 0 }, c_sla = { 0 }, c_sla_full = { 0 }, c_q = { 0 }, c_i2v = { 0 }, c_low = { 0 };
    td_ctx ctx;

    td_ctx_init(&ctx);
    for (size_t i = 0; i < sizeof(im.rgb); i++)
        im.rgb[i] = (uint8_t)(test_next(&r) >> 56);
    if (!mkdtemp(tmp)) {
        CHECK(0, "mkdtemp");
        return check_summary();
    }

    compare("t2v full attention", TD_ROOT "/tests/data/pipeline", &t2v, 0, &full);

    snprintf(sla_dir, sizeof(sla_dir), "%s/sla", tmp);
    snprintf(path, sizeof(path), "%s/dit_sla.safetensors", sla_dir);
    CHECK(mkdir(sla_dir, 0700) == 0 && make_sla_dit(&ctx, path, &r) == 0 &&
          write_manifest(sla_dir, path) == 0, "SLA model set: %s", ctx.errmsg);
    compare("t2v SLA", sla_dir, &sla, 0, &c_sla);
    compare("t2v SLA model, full attention", sla_dir, &t2v, 0, &c_sla_full);
    expect_differs("SLA", &c_sla, &c_sla_full);
    unlink(path);

    snprintf(q_dir, sizeof(q_dir), "%s/quant", tmp);
    snprintf(path, sizeof(path), "%s/dit_quant.safetensors", q_dir);
    CHECK(mkdir(q_dir, 0700) == 0 && make_quant_dit(&ctx, path) == 0 &&
          write_manifest(q_dir, path) == 0, "W8A8 model set: %s", ctx.errmsg);
    compare("t2v W8A8", q_dir, &t2v, 0, &c_q);
    expect_differs("W8A8", &c_q, &full);
    unlink(path);

    compare("i2v expert pair", TD_ROOT "/tests/data/pipeline/i2v", &i2v, 0, &c_i2v);
    compare("i2v expert pair, low memory", TD_ROOT "/tests/data/pipeline/i2v", &i2v, 1, &c_low);
    CHECK(c_i2v.rgb && c_low.rgb &&
          !memcmp(c_i2v.rgb, c_low.rgb, (size_t)FRAMES * H * W * 3 * sizeof(float)),
          "low memory residency changes the i2v frames");

    {
        td_engine *eng = open_on(TD_ROOT "/tests/data/pipeline", "fenced-f32", fenced_f32, 0);
        td_error err = { 0 };
        clip c = { 0 };
        if (eng) {
            CHECK(run(eng, &t2v, 1, &c, &err) == TD_ECANCELLED && c.frames == 0,
                  "cancel after step 1 on the fenced backend: %d frames (%s)", c.frames, err.msg);
            td_engine_release(&eng);
        }
        free(c.rgb);
    }

    snprintf(path, sizeof(path), "%s/sla/turbodiff.json", tmp);
    unlink(path);
    snprintf(path, sizeof(path), "%s/quant/turbodiff.json", tmp);
    unlink(path);
    rmdir(sla_dir);
    rmdir(q_dir);
    rmdir(tmp);
    free(full.rgb);
    free(c_sla.rgb);
    free(c_sla_full.rgb);
    free(c_q.rgb);
    free(c_i2v.rgb);
    free(c_low.rgb);
    return check_summary();
}
