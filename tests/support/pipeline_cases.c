/*
 * The whole-pipeline cases shared by the backends' pipeline tests (see
 * pipeline_cases.h).
 */
#include "pipeline_cases.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ctx.h"
#include "dit/dit_quantize.h"
#include "io/safetensors_write.h"
#include "io/weights.h"
#include "pipeline/engine.h"

#define SLA_DIT "dit_sla.safetensors"
#define W8A8_DIT "dit_w8a8.safetensors"
#define MANIFEST "turbodiff.json"

const char *tc_root(void)
{
    const char *env = getenv("TD_TEST_ROOT");
    return env && *env ? env : TD_ROOT;
}

/* snprintf that reports truncation as an error rather than a short path. */
static int path_of(char *out, size_t size, const char *a, const char *b)
{
    int n = snprintf(out, size, "%s/%s", a, b);
    return n < 0 || (size_t)n >= size ? TD_EINVAL : 0;
}

/* A model directory's manifest: the tiny pipeline set with the DiT
 * replaced by dit_path (the VAE, encoder and tokenizer by path). */
static int write_manifest(td_ctx *ctx, const char *dir, const char *dit_path)
{
    const char *root = tc_root();
    char path[1024];
    FILE *f;
    if (path_of(path, sizeof(path), dir, MANIFEST) || !(f = fopen(path, "w")))
        return td_fail(ctx, TD_EIO, "cannot write %s/" MANIFEST, dir);
    fprintf(f, "{ \"dit\": \"%s\", \"vae\": \"%s/tests/data/vae/vae_wan.pth\", "
            "\"t5\": \"%s/tests/data/pipeline/umt5.safetensors\", "
            "\"tokenizer\": \"%s/tests/data/text/spiece.model\", \"size\": \"%dx%d\", \"frames\": %d }\n",
            dit_path, root, root, root, TC_W, TC_H, TC_FRAMES);
    return fclose(f) ? td_fail(ctx, TD_EIO, "cannot write %s", path) : 0;
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

static int make_sla_dit(td_ctx *ctx, const char *dit, const char *out, test_rng *r)
{
    td_weights *w = NULL;
    td_st_item items[128];
    const char *names[128];
    char extra[4][96];
    int n = 0, rc;

    TD_TRY(td_weights_open(ctx, dit, &w));
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

static int make_w8a8_dit(td_ctx *ctx, const char *dit, const char *out)
{
    td_weights *w = NULL;
    int rc;
    TD_TRY(td_weights_open(ctx, dit, &w));
    rc = td_dit_quantize(ctx, w, out, NULL);
    td_weights_close(&w);
    return rc;
}

/* A model directory in the suite's temporary folder: name/, holding a
 * variant of the t2v DiT (SLA, with proj_l drawn from r, or W8A8) and a
 * manifest naming it. */
static int make_set(td_ctx *ctx, const tc_suite *s, char *dir, size_t dir_size, const char *name,
                    int sla, test_rng *r)
{
    const char *dit_file = sla ? SLA_DIT : W8A8_DIT;
    char src[1024], dit[1024];
    if (path_of(dir, dir_size, s->tmp, name) || path_of(dit, sizeof(dit), dir, dit_file) ||
        path_of(src, sizeof(src), s->t2v_dir, "dit.safetensors"))
        return td_fail(ctx, TD_EINVAL, "model set path too long under %s", s->tmp);
    if (mkdir(dir, 0700))
        return td_fail(ctx, TD_EIO, "cannot make %s", dir);
    TD_TRY(sla ? make_sla_dit(ctx, src, dit, r) : make_w8a8_dit(ctx, src, dit));
    return write_manifest(ctx, dir, dit);
}

static void set_cases(tc_suite *s)
{
    const tc_want t2v = { NULL, TD_ATTN_FULL, TD_SAMPLER_AUTO }, sla = { NULL, TD_ATTN_SLA, TD_SAMPLER_AUTO },
                  i2v = { s->image, TD_ATTN_FULL, TD_SAMPLER_AUTO }, dmd = { NULL, TD_ATTN_FULL, TD_SAMPLER_DMD };
    s->cases[TC_T2V] = (tc_case){ "t2v full attention", s->t2v_dir, t2v, 0 };
    s->cases[TC_SLA] = (tc_case){ "t2v SLA", s->sla_dir, sla, 0 };
    s->cases[TC_SLA_FULL] = (tc_case){ "t2v SLA model, full attention", s->sla_dir, t2v, 0 };
    s->cases[TC_W8A8] = (tc_case){ "t2v W8A8", s->w8a8_dir, t2v, 0 };
    s->cases[TC_I2V] = (tc_case){ "i2v expert pair", s->i2v_dir, i2v, 0 };
    s->cases[TC_I2V_LOW] = (tc_case){ "i2v expert pair, low memory", s->i2v_dir, i2v, 1 };
    s->cases[TC_TI2V] = (tc_case){ "TI2V-5B t2v", s->ti2v_dir, t2v, 0 };
    s->cases[TC_TI2V_I2V] = (tc_case){ "TI2V-5B i2v", s->ti2v_dir, i2v, 0 };
    s->cases[TC_DMD] = (tc_case){ "t2v DMD", s->t2v_dir, dmd, 0 };
}

int tc_suite_make(td_ctx *ctx, test_rng *r, tc_suite *s)
{
    memset(s, 0, sizeof(*s));
    set_cases(s);
    if (path_of(s->t2v_dir, sizeof(s->t2v_dir), tc_root(), "tests/data/pipeline") ||
        path_of(s->i2v_dir, sizeof(s->i2v_dir), s->t2v_dir, "i2v") ||
        path_of(s->ti2v_dir, sizeof(s->ti2v_dir), s->t2v_dir, "ti2v"))
        return td_fail(ctx, TD_EINVAL, "fixture root too long: %s", tc_root());
    for (size_t i = 0; i < sizeof(s->image); i++)
        s->image[i] = (uint8_t)(test_next(r) >> 56);
    strcpy(s->tmp, "/tmp/td_pipeline_XXXXXX");
    if (!mkdtemp(s->tmp)) {
        s->tmp[0] = '\0';
        return td_fail(ctx, TD_EIO, "cannot make a temporary folder");
    }
    TD_TRY(make_set(ctx, s, s->sla_dir, sizeof(s->sla_dir), "sla", 1, r));
    return make_set(ctx, s, s->w8a8_dir, sizeof(s->w8a8_dir), "w8a8", 0, r);
}

static void remove_set(const char *dir, const char *dit_file)
{
    char path[1024];
    if (!dir[0])
        return;
    if (!path_of(path, sizeof(path), dir, dit_file))
        unlink(path);
    if (!path_of(path, sizeof(path), dir, MANIFEST))
        unlink(path);
    rmdir(dir);
}

void tc_suite_remove(tc_suite *s)
{
    remove_set(s->sla_dir, SLA_DIT);
    remove_set(s->w8a8_dir, W8A8_DIT);
    if (s->tmp[0])
        rmdir(s->tmp);
    s->tmp[0] = s->sla_dir[0] = s->w8a8_dir[0] = '\0';
}

int tc_open(const char *dir, const char *device, td_backend_factory make, int low_memory,
            td_engine **out, td_error *err)
{
    td_engine_config cfg;
    td_engine_config_default(&cfg);
    cfg.model_dir = dir;
    cfg.threads = 2;
    cfg.low_memory = low_memory;
    cfg.device = make ? "cpu" : device;
    return make ? td_engine_open_on(&cfg, device, make, out, err) : td_engine_open(&cfg, out, err);
}

static int on_frame(void *opaque, const td_frame *f)
{
    tc_clip *c = opaque;
    if (f->width != TC_W || f->height != TC_H || f->index != c->frames || f->index >= TC_FRAMES) {
        c->bad++;
        return 1;
    }
    for (int y = 0; y < TC_H; y++)
        memcpy(c->rgb + ((size_t)f->index * TC_H + y) * TC_W * 3,
               (const char *)f->data + y * f->linesize, TC_W * 3 * sizeof(float));
    c->frames++;
    return 0;
}

static void on_progress(void *opaque, const td_progress *p)
{
    tc_clip *c = opaque;
    if (c->cancel_at_step && p->stage == TD_STAGE_DENOISE && p->step == c->cancel_at_step)
        __atomic_store_n(&c->cancel, 1, __ATOMIC_RELAXED);
}

int tc_run(td_engine *eng, const tc_want *want, int cancel_at_step, tc_clip *c, td_error *err)
{
    td_job job;
    memset(c, 0, sizeof(*c));
    c->cancel_at_step = cancel_at_step;
    if (!(c->rgb = calloc(TC_CLIP_FLOATS, sizeof(float))))
        return TD_ENOMEM;
    td_job_default(&job);
    job.prompt = "a red circle moves right on a blue background";
    job.width = TC_W;
    job.height = TC_H;
    job.frames = TC_FRAMES;
    job.seed = 11;
    job.flow_steps = 3;   /* TI2V: flow matching, 2 DiT calls per step */
    job.attention = want->attention;
    job.sampler = want->sampler;
    job.topk = 0.5;
    job.frame_format = TD_FRAME_RGBF32;
    if (want->image) {
        job.image = want->image;
        job.image_width = TC_IMAGE_W;
        job.image_height = TC_IMAGE_H;
        job.image_linesize = TC_IMAGE_W * 3;
    }
    job.on_frame = on_frame;
    job.on_progress = on_progress;
    job.cancel = &c->cancel;
    job.opaque = c;
    job.error = err;
    return td_job_run(eng, &job);
}

int tc_case_clip(const tc_case *k, const char *device, td_backend_factory make, tc_clip *c,
                 td_error *err)
{
    td_engine *eng = NULL;
    int rc = tc_open(k->dir, device, make, k->low_memory, &eng, err);
    memset(c, 0, sizeof(*c));
    if (rc)
        return rc;
    rc = tc_run(eng, &k->want, 0, c, err);
    td_engine_release(&eng);
    if (rc == 0 && (c->frames != TC_FRAMES || c->bad)) {
        snprintf(err->msg, sizeof(err->msg), "%d of %d frames, %d out of order or size",
                 c->frames, TC_FRAMES, c->bad);
        rc = TD_EINVAL;
    }
    return rc;
}

void tc_clip_free(tc_clip *c)
{
    free(c->rgb);
    c->rgb = NULL;
}

double tc_rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

int tc_clips_equal(const tc_clip *a, const tc_clip *b)
{
    return a->rgb && b->rgb && !memcmp(a->rgb, b->rgb, TC_CLIP_FLOATS * sizeof(float));
}
