/* Wan2.2 TI2V-5B through td_job_run on the committed tiny set
 * (tests/data/pipeline/ti2v: a 48-channel DiT, the Wan2.2 VAE, umT5):
 * text-to-video and image-to-video equal the clips diffusers'
 * WanPipeline / WanImageToVideoPipeline (expand_timesteps) made from the
 * same weights and noise (gen_ti2v_fixture.py; 3 UniPC steps with CFG and
 * Wan's negative prompt, which the engine picks by itself for TI2V); the
 * model's rate is 24 fps; the image changes the clip; a Wan2.1 VAE with
 * the TI2V DiT is refused at open naming both. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/ctx.h"
#include "io/npy.h"
#include "turbodiff.h"

#define DIR TD_ROOT "/tests/data/pipeline/ti2v"
#define W 64
#define H 32
#define F 5
#define PROMPT "  a red circle &amp; a blue\tsquare   move right  "

typedef struct sink {
    float *rgb;
    int frames, bad;
} sink;

static int on_frame(void *opaque, const td_frame *f)
{
    sink *s = opaque;
    if (f->width != W || f->height != H || f->index != s->frames || f->index >= F) {
        s->bad++;
        return 1;
    }
    for (int y = 0; y < H; y++)
        memcpy(s->rgb + ((size_t)f->index * H + y) * W * 3, (const char *)f->data + y * f->linesize,
               W * 3 * sizeof(float));
    s->frames++;
    return 0;
}

static int run(td_engine *eng, const uint8_t *image, sink *s, td_error *err)
{
    td_job job;
    td_job_default(&job);
    job.prompt = PROMPT;
    td_engine_native_clip(eng, &job.width, &job.height, &job.frames);
    job.seed = 11;
    job.flow_steps = 3;
    job.attention = TD_ATTN_FULL;
    job.frame_format = TD_FRAME_RGBF32;
    if (image) {
        job.image = image;
        job.image_width = W;
        job.image_height = H;
        job.image_linesize = W * 3;
    }
    job.on_frame = on_frame;
    job.opaque = s;
    job.error = err;
    s->frames = s->bad = 0;
    return td_job_run(eng, &job);
}

static double rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / den);
}

/* Our clip against the committed diffusers clip ref_<name>.npy. */
static void against_reference(td_engine *eng, const uint8_t *image, const char *name, float *out)
{
    td_ctx ctx;
    td_tensor ref = { 0 };
    td_error err = { 0 };
    char path[1024];
    sink s = { out, 0, 0 };
    int rc = run(eng, image, &s, &err);

    td_ctx_init(&ctx);
    snprintf(path, sizeof(path), DIR "/ref_%s.npy", name);
    CHECK(rc == 0 && s.frames == F && !s.bad, "%s: rc %d, %d frames, %d bad: %s", name, rc, s.frames,
          s.bad, err.msg);
    CHECK(td_npy_read(&ctx, path, &ref) == 0 && td_numel(&ref) == (int64_t)F * H * W * 3, "%s: %s",
          path, ctx.errmsg);
    if (rc == 0 && ref.data) {
        double e = rel_l2(out, ref.data, (size_t)F * H * W * 3);
        printf("TI2V %s vs diffusers: rel L2 %.3g\n", name, e);
        CHECK(e < 1e-4, "%s: rel L2 %.3g vs diffusers", name, e);
    }
    td_tensor_free(&ref);
}

/* The TI2V DiT with the Wan2.1 VAE: 16 latent channels, not 48. */
static void wrong_vae(void)
{
    char dir[] = "/tmp/td_ti2v_XXXXXX", path[1024];
    td_engine_config cfg;
    td_engine *eng = NULL;
    td_error err = { 0 };
    FILE *f;
    int rc;

    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof(path), "%s/turbodiff.json", dir);
    f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f)
        return;
    fprintf(f, "{\"dit\": \"%s/dit.safetensors\", \"vae\": \"%s/tests/data/vae/vae_wan.pth\", \"t5\": "
            "\"%s/tests/data/pipeline/umt5.safetensors\", \"tokenizer\": \"%s/tests/data/text/spiece.model\"}",
            DIR, TD_ROOT, TD_ROOT, TD_ROOT);
    fclose(f);
    td_engine_config_default(&cfg);
    cfg.model_dir = dir;
    cfg.threads = 2;
    rc = td_engine_open(&cfg, &eng, &err);
    CHECK(rc == TD_EUNSUPPORTED && !eng && strstr(err.msg, "vae_wan.pth") && strstr(err.msg, "makes 48") &&
          strstr(err.msg, "Wan2.2 VAE"), "Wan2.1 VAE with the TI2V DiT: %d %s", rc, err.msg);
    td_engine_release(&eng);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    td_engine_config cfg;
    td_engine *eng = NULL;
    td_error err = { 0 };
    td_ctx ctx;
    td_tensor image = { 0 };
    float *t2v = calloc((size_t)F * H * W * 3, sizeof(float)), *i2v = calloc((size_t)F * H * W * 3, sizeof(float));
    int w = 0, h = 0, n = 0;

    td_ctx_init(&ctx);
    td_engine_config_default(&cfg);
    cfg.model_dir = DIR;
    cfg.threads = 2;
    CHECK(td_engine_open(&cfg, &eng, &err) == 0, "open: %s", err.msg);
    CHECK(td_npy_read(&ctx, DIR "/image.npy", &image) == 0 && td_numel(&image) == W * H * 3, "image.npy: %s",
          ctx.errmsg);
    if (eng && image.data && t2v && i2v) {
        CHECK(td_engine_native_clip(eng, &w, &h, &n) == 1 && w == W && h == H && n == F,
              "the manifest's clip: %dx%d x %d", w, h, n);
        CHECK(td_engine_native_fps(eng) == 24, "TI2V-5B moves at 24 fps, not %d", td_engine_native_fps(eng));
        against_reference(eng, NULL, "t2v", t2v);
        against_reference(eng, image.data, "i2v", i2v);
        CHECK(rel_l2(t2v, i2v, (size_t)F * H * W * 3) > 1e-2, "the image changes the clip");
    }
    td_engine_release(&eng);
    wrong_vae();
    td_tensor_free(&image);
    free(t2v);
    free(i2v);
    return check_summary();
}
