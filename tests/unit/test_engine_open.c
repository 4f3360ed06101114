/*
 * td_engine_open / td_engine_release / td_job_validate: model-directory
 * recognition, manifest, explicit overrides, sharing by canonical files, and
 * the error messages users see for bad options.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend.h"
#include "check.h"
#include "turbodiff.h"

static char root[256];

/* root/rel holding exactly text. */
static void write_rel(const char *rel, const char *text)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void touch(const char *rel)
{
    write_rel(rel, "x");
}

/* A model file the engine really loads: a link to one of the tiny fixtures. */
static void link_fixture(const char *rel, const char *fixture)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    if (symlink(fixture, path))
        fprintf(stderr, "symlink %s: failed\n", path);
}

#define TINY_DIT TD_ROOT "/tests/data/pipeline/dit.safetensors"
#define TINY_VAE TD_ROOT "/tests/data/vae/vae_wan.pth"
#define TINY_T5 TD_ROOT "/tests/data/pipeline/umt5.safetensors"
#define TINY_SPM TD_ROOT "/tests/data/text/spiece.model"

static void mkdir_rel(const char *rel)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    mkdir(path, 0755);
}

static int open_dir(const char *rel, td_engine **eng, td_error *err)
{
    char dir[512];
    td_engine_config cfg;
    td_engine_config_default(&cfg);
    snprintf(dir, sizeof(dir), "%s/%s", root, rel);
    cfg.model_dir = dir;
    return td_engine_open(&cfg, eng, err);
}

/* Counts the info lines that hold a string (opaque: struct said). */
struct said {
    const char *needle;
    int count;
};

static void count_said(void *opaque, int level, const char *msg)
{
    struct said *s = opaque;
    if (level == TD_LOG_INFO && strstr(msg, s->needle))
        s->count++;
}

static int noop_frame(void *opaque, const td_frame *f)
{
    (void)opaque; (void)f;
    return 0;
}

static void expect_invalid(td_engine *eng, td_job job, const char *needle)
{
    td_error err = { 0 };
    job.error = &err;
    int ret = td_job_validate(eng, &job);
    CHECK(ret == TD_EINVAL && strstr(err.msg, needle), "wanted '%s', got %d '%s'", needle, ret,
          err.msg);
}

/* What a job reports of its sampler: the verbose log line naming it and
 * the step count of the denoise stage, where it is stopped. */
typedef struct sampler_seen {
    char name[64];
    int steps;
    int cancel;
} sampler_seen;

static void seen_log(void *opaque, int level, const char *msg)
{
    sampler_seen *s = opaque;
    (void)level;
    if (!strncmp(msg, "sampler: ", 9))
        snprintf(s->name, sizeof(s->name), "%s", msg + 9);
}

static void seen_progress(void *opaque, const td_progress *p)
{
    sampler_seen *s = opaque;
    if (p->stage == TD_STAGE_DENOISE && !s->steps) {
        s->steps = p->steps;
        __atomic_store_n(&s->cancel, 1, __ATOMIC_RELAXED);
    }
}

/* The sampler a job with `sampler` and `timesteps` runs on the set in rel,
 * stopped before its first step; returns the job's code. */
static int job_sampler(const char *rel, int sampler, const char *timesteps, sampler_seen *s,
                       td_error *err)
{
    td_engine *eng = NULL;
    td_job job;
    int ret;

    memset(s, 0, sizeof(*s));
    if ((ret = open_dir(rel, &eng, err)) < 0)
        return ret;
    td_job_default(&job);
    job.prompt = "a red circle";
    job.width = 64, job.height = 32, job.frames = 5;
    job.sampler = sampler;
    job.timesteps = timesteps;
    job.on_frame = noop_frame;
    job.on_progress = seen_progress;
    job.log = seen_log;
    job.opaque = job.log_opaque = s;
    job.log_level = TD_LOG_VERBOSE;
    job.cancel = &s->cancel;
    job.error = err;
    ret = td_job_run(eng, &job);
    td_engine_release(&eng);
    return ret;
}

/* FastVideo's FastWan checkpoints: a diffusers directory whose
 * model_index.json names WanDMDPipeline samples with DMD (FastWan's three
 * steps) at FastVideo's 832x448 x 61 clip; another pipeline there, or none,
 * leaves the choice to the DiT; a manifest's "sampler" declares it too. */
static void test_sampler_choice(void)
{
    static const char *const subdirs[] = { "fastwan", "fastwan/transformer", "fastwan/vae",
                                           "fastwan/text_encoder", "fastwan/tokenizer", "fastwan/scheduler" };
    sampler_seen s;
    td_error err;
    td_engine *eng = NULL;
    int ret, w = 0, h = 0, frames = 0;

    for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++)
        mkdir_rel(subdirs[i]);
    link_fixture("fastwan/transformer/diffusion_pytorch_model.safetensors", TINY_DIT);
    link_fixture("fastwan/vae/diffusion_pytorch_model.safetensors", TINY_VAE);
    link_fixture("fastwan/text_encoder/model.safetensors", TINY_T5);
    link_fixture("fastwan/tokenizer/spiece.model", TINY_SPM);
    write_rel("fastwan/scheduler/scheduler_config.json", "{\"_class_name\": \"UniPCMultistepScheduler\"}");
    write_rel("fastwan/model_index.json", "{\"_class_name\": \"WanDMDPipeline\", \"_diffusers_version\": "
              "\"0.33.0.dev0\", \"transformer\": [\"diffusers\", \"WanTransformer3DModel\"]}");
    ret = job_sampler("fastwan", TD_SAMPLER_AUTO, NULL, &s, &err);
    CHECK(ret == TD_ECANCELLED && !strcmp(s.name, "DMD (FastWan)") && s.steps == 3,
          "FastWan layout: %d '%s' %d steps (%s)", ret, s.name, s.steps, err.msg);
    ret = job_sampler("fastwan", TD_SAMPLER_AUTO, "1000, 500", &s, &err);
    CHECK(ret == TD_ECANCELLED && s.steps == 2, "timesteps 1000,500: %d %d steps (%s)", ret, s.steps,
          err.msg);
    ret = job_sampler("fastwan", TD_SAMPLER_RCM, NULL, &s, &err);
    CHECK(ret == TD_ECANCELLED && !strcmp(s.name, "rCM") && s.steps == 4, "rcm asked: '%s' %d",
          s.name, s.steps);
    ret = open_dir("fastwan", &eng, &err);
    CHECK(ret == 0 && td_engine_native_clip(eng, &w, &h, &frames) == 1 && w == 832 && h == 448 &&
          frames == 61, "FastWan clip: %d %dx%d x %d", ret, w, h, frames);
    td_engine_release(&eng);

    write_rel("fastwan/model_index.json", "{\"_class_name\": \"WanPipeline\"}");
    ret = job_sampler("fastwan", TD_SAMPLER_AUTO, NULL, &s, &err);
    CHECK(ret == TD_ECANCELLED && !strcmp(s.name, "rCM"), "WanPipeline: %d '%s'", ret, s.name);
    ret = job_sampler("fastwan", TD_SAMPLER_DMD, NULL, &s, &err);
    CHECK(ret == TD_ECANCELLED && !strcmp(s.name, "DMD (FastWan)") && s.steps == 3,
          "dmd asked: '%s' %d", s.name, s.steps);
    write_rel("fastwan/model_index.json", "{\"_class_name\": ");
    ret = open_dir("fastwan", &eng, &err);
    CHECK(ret == TD_EFORMAT && !eng && strstr(err.msg, "model_index.json"), "%d %s", ret, err.msg);
    write_rel("fastwan/model_index.json", "[1]");
    ret = open_dir("fastwan", &eng, &err);
    CHECK(ret == TD_EFORMAT && strstr(err.msg, "_class_name"), "%d %s", ret, err.msg);

    mkdir_rel("dmdjson");
    link_fixture("dmdjson/dit.safetensors", TINY_DIT);
    link_fixture("dmdjson/vae.pth", TINY_VAE);
    link_fixture("dmdjson/t5.safetensors", TINY_T5);
    link_fixture("dmdjson/spiece.model", TINY_SPM);
    write_rel("dmdjson/turbodiff.json", "{\"dit\": \"dit.safetensors\", \"vae\": \"vae.pth\", "
              "\"t5\": \"t5.safetensors\", \"tokenizer\": \"spiece.model\", \"sampler\": \"dmd\"}");
    ret = job_sampler("dmdjson", TD_SAMPLER_AUTO, NULL, &s, &err);
    CHECK(ret == TD_ECANCELLED && !strcmp(s.name, "DMD (FastWan)"), "manifest dmd: %d '%s' (%s)", ret,
          s.name, err.msg);
    write_rel("dmdjson/turbodiff.json", "{\"dit\": \"dit.safetensors\", \"vae\": \"vae.pth\", "
              "\"t5\": \"t5.safetensors\", \"sampler\": \"ddim\"}");
    ret = open_dir("dmdjson", &eng, &err);
    CHECK(ret == TD_EFORMAT && strstr(err.msg, "\"sampler\" must be"), "%d %s", ret, err.msg);
    /* DMD runs one DiT: an expert pair is refused, naming both files */
    write_rel("dmdjson/turbodiff.json", "{\"dit\": \"dit.safetensors\", \"dit_low\": \"dit.safetensors\", "
              "\"vae\": \"vae.pth\", \"t5\": \"t5.safetensors\", \"tokenizer\": \"spiece.model\", "
              "\"sampler\": \"dmd\"}");
    ret = job_sampler("dmdjson", TD_SAMPLER_AUTO, NULL, &s, &err);
    CHECK(ret == TD_EINVAL && strstr(err.msg, "expert pair") && strstr(err.msg, "rcm or flow"),
          "pair: %d %s", ret, err.msg);
}

int main(void)
{
    td_engine *a = NULL, *b = NULL, *c = NULL;
    td_engine_config cfg;
    td_error err;
    char path[600];
    int ret;

    snprintf(root, sizeof(root), "/tmp/td_engine_open_XXXXXX");
    if (!mkdtemp(root))
        return 1;

    /* No model named: the default model (models/toy, committed; or the
     * installed copy of it) opens, with its own 64x64 x 17 clip. That a
     * missing default is refused is test_default_model's. */
    unsetenv("TURBODIFF_MODEL_DIR");
    td_engine_config_default(&cfg);
    ret = td_engine_open(&cfg, &a, &err);
    CHECK(ret == 0 && a, "%d %s", ret, err.msg);
    if (a) {
        int w = 0, h = 0, frames = 0;
        CHECK(td_engine_native_clip(a, &w, &h, &frames) == 1 && w == 64 && h == 64 && frames == 17,
              "the default model's clip: %dx%d x %d", w, h, frames);
    }
    td_engine_release(&a);

    /* A directory that does not exist. */
    ret = open_dir("missing", &a, &err);
    CHECK(ret == TD_ENOTFOUND && strstr(err.msg, "missing"), "%d %s", ret, err.msg);

    /* TurboDiffusion + Wan names; the tokenizer in google/umt5-xxl/. */
    mkdir_rel("turbo");
    link_fixture("turbo/TurboWan2.1-T2V-1.3B-480P-quant.pth", TINY_DIT);
    link_fixture("turbo/Wan2.1_VAE.pth", TINY_VAE);
    ret = open_dir("turbo", &a, &err);
    CHECK(ret == TD_ENOTFOUND && strstr(err.msg, "no t5 file") &&
          strstr(err.msg, "models_t5_umt5-xxl-enc-bf16.pth"), "%d %s", ret, err.msg);
    link_fixture("turbo/models_t5_umt5-xxl-enc-bf16.pth", TINY_T5);
    mkdir_rel("turbo/google");
    mkdir_rel("turbo/google/umt5-xxl");
    link_fixture("turbo/google/umt5-xxl/spiece.model", TINY_SPM);
    ret = open_dir("turbo", &a, &err);
    CHECK(ret == 0 && a, "open turbo: %d %s", ret, err.msg);

    /* The same files spelt differently share the engine. */
    ret = open_dir("turbo/google/../", &b, &err);
    CHECK(ret == 0 && b == a, "second open: %d %s (%p vs %p)", ret, err.msg, (void *)b, (void *)a);

    /* Explicit files naming the same set share it too. */
    td_engine_config_default(&cfg);
    snprintf(path, sizeof(path), "%s/turbo/TurboWan2.1-T2V-1.3B-480P-quant.pth", root);
    cfg.dit = path;
    ret = td_engine_open(&cfg, &c, &err);
    CHECK(ret == TD_ENOTFOUND && strstr(err.msg, "no vae file"), "%d %s", ret, err.msg);
    cfg.model_dir = root;  /* has no files of its own: all come from explicit paths */
    {
        char vae[600], t5[600], tok[600];
        snprintf(vae, sizeof(vae), "%s/turbo/Wan2.1_VAE.pth", root);
        snprintf(t5, sizeof(t5), "%s/turbo/models_t5_umt5-xxl-enc-bf16.pth", root);
        snprintf(tok, sizeof(tok), "%s/turbo/google/umt5-xxl/spiece.model", root);
        cfg.vae = vae; cfg.t5 = t5; cfg.tokenizer = tok;
        ret = td_engine_open(&cfg, &c, &err);
        CHECK(ret == 0 && c == a, "explicit open: %d %s", ret, err.msg);
        td_engine_release(&c);
        CHECK(c == NULL, "release clears the pointer");
    }

    /* An ambiguous DiT asks the user to choose. */
    touch("turbo/TurboWan2.1-T2V-1.3B-480P.pth");
    ret = open_dir("turbo", &c, &err);
    CHECK(ret == TD_EINVAL && strstr(err.msg, "choose one with the dit option"), "%d %s", ret,
          err.msg);

    /* ... and dit chooses: a name relative to the directory, a path below
     * it, an absolute path, or a path relative to the current directory
     * all select that file (they are the same set, so they share a). */
    {
        char dir[400], abs_dit[512], cwd[512];
        const char *names[] = { "TurboWan2.1-T2V-1.3B-480P-quant.pth",
                                "ckpt/TurboWan2.1-T2V-1.3B-480P-quant.pth", abs_dit };
        mkdir_rel("turbo/ckpt");
        link_fixture("turbo/ckpt/TurboWan2.1-T2V-1.3B-480P-quant.pth", TINY_DIT);
        snprintf(dir, sizeof(dir), "%s/turbo", root);
        snprintf(abs_dit, sizeof(abs_dit), "%s/TurboWan2.1-T2V-1.3B-480P-quant.pth", dir);
        for (int i = 0; i < 3; i++) {
            td_engine_config_default(&cfg);
            cfg.model_dir = dir;
            cfg.dit = names[i];
            ret = td_engine_open(&cfg, &c, &err);
            CHECK(ret == 0 && c, "dit=%s in an ambiguous directory: %d %s", names[i], ret, err.msg);
            td_engine_release(&c);
        }
        if (getcwd(cwd, sizeof(cwd)) && !chdir(root)) {
            td_engine_config_default(&cfg);
            cfg.model_dir = "turbo";
            cfg.dit = "turbo/TurboWan2.1-T2V-1.3B-480P-quant.pth";
            ret = td_engine_open(&cfg, &c, &err);
            CHECK(ret == 0 && c, "dit relative to the current directory: %d %s", ret, err.msg);
            td_engine_release(&c);
            CHECK(chdir(cwd) == 0, "back to %s", cwd);
        }
        /* Choosing the other one loads that one (here a one-byte file). */
        td_engine_config_default(&cfg);
        cfg.model_dir = dir;
        cfg.dit = "TurboWan2.1-T2V-1.3B-480P.pth";
        ret = td_engine_open(&cfg, &c, &err);
        CHECK(ret < 0 && !c && strstr(err.msg, "TurboWan2.1-T2V-1.3B-480P.pth") &&
              !strstr(err.msg, "choose one"), "dit= the bf16 file: %d %s", ret, err.msg);
    }

    /* Releasing both users frees it; a new open builds a fresh engine. */
    td_engine_release(&a);
    td_engine_release(&b);

    /* A manifest wins over names, with paths relative to the directory. */
    mkdir_rel("manifest");
    link_fixture("manifest/dit.safetensors", TINY_DIT);
    link_fixture("manifest/vae.safetensors", TINY_VAE);
    link_fixture("manifest/t5.safetensors", TINY_T5);
    link_fixture("manifest/spiece.model", TINY_SPM);
    /* The manifest's name and description are said once at info, when the
     * model loads (no engine holds these files yet); a second opener shares
     * the engine and hears nothing. */
    {
        td_engine *c = NULL, *d = NULL;
        struct said said = { "model \"tiny-described\": draws 7 noisy squares", 0 };
        write_rel("manifest/turbodiff.json", "{\"name\": \"tiny-described\", \"description\": "
                  "\"draws 7 noisy squares\", \"dit\": \"dit.safetensors\", \"vae\": "
                  "\"vae.safetensors\", \"t5\": \"t5.safetensors\", \"tokenizer\": \"spiece.model\", "
                  "\"frames\": 3}");
        td_engine_config_default(&cfg);
        snprintf(path, sizeof(path), "%s/manifest", root);
        cfg.model_dir = path;
        cfg.log = count_said;
        cfg.log_opaque = &said;
        ret = td_engine_open(&cfg, &c, &err);
        CHECK(ret == 0 && said.count == 1, "described manifest: %d %s, said %d times", ret,
              err.msg, said.count);
        ret = td_engine_open(&cfg, &d, &err);
        CHECK(ret == 0 && said.count == 1, "shared open: %d %s, said %d times", ret, err.msg,
              said.count);
        td_engine_release(&c);
        td_engine_release(&d);
        write_rel("manifest/turbodiff.json", "{\"description\": 7, \"dit\": \"dit.safetensors\"}");
        ret = td_engine_open(&cfg, &c, &err);
        CHECK(ret == TD_EFORMAT && strstr(err.msg, "\"description\" must be a string") && !c,
              "%d %s", ret, err.msg);
    }
    write_rel("manifest/turbodiff.json", "{\"name\": \"tiny\", \"dit\": \"dit.safetensors\", "
              "\"vae\": \"vae.safetensors\", \"t5\": \"t5.safetensors\", \"tokenizer\": \"spiece.model\"}");
    ret = open_dir("manifest", &a, &err);
    CHECK(ret == 0 && a, "manifest open: %d %s", ret, err.msg);
    write_rel("manifest/turbodiff.json", "{\"dti\": \"dit.safetensors\"}");
    ret = open_dir("manifest", &b, &err);
    CHECK(ret == TD_EFORMAT && strstr(err.msg, "unknown key \"dti\""), "%d %s", ret, err.msg);
    write_rel("manifest/turbodiff.json", "{\"dit\": ");
    ret = open_dir("manifest", &b, &err);
    CHECK(ret == TD_EFORMAT && strstr(err.msg, "turbodiff.json"), "%d %s", ret, err.msg);

    /* Devices. */
    td_engine_config_default(&cfg);
    snprintf(path, sizeof(path), "%s/manifest", root);
    cfg.model_dir = path;
    cfg.device = "gpu";
    ret = td_engine_open(&cfg, &b, &err);
    CHECK(ret == TD_EINVAL && strstr(err.msg, "device 'gpu'"), "%d %s", ret, err.msg);
    cfg.device = "cuda:x";
    ret = td_engine_open(&cfg, &b, &err);
    CHECK(ret == TD_EINVAL && strstr(err.msg, "cuda:N"), "%d %s", ret, err.msg);

    /* Job validation: every message names the field and what is valid. */
    {
        td_job job;
        td_job_default(&job);
        job.prompt = "a red circle";
        job.on_frame = noop_frame;
        CHECK(td_job_validate(a, &job) == 0, "default job validates");
        CHECK(td_job_validate(NULL, &job) == 0, "options check without an engine");
        td_job bad = job;
        bad.width = 850;
        expect_invalid(a, bad, "size 850x480 is not a multiple of 16: the nearest valid sizes "
                       "are 848x480 and 864x480");
        bad = job; bad.height = 8;
        expect_invalid(a, bad, "height 8 is out of range");
        bad = job; bad.frames = 0;
        expect_invalid(a, bad, "frames 0");
        bad = job; bad.steps = 0;
        expect_invalid(a, bad, "steps 0");
        bad = job; bad.steps = 5;
        expect_invalid(a, bad, "steps 5");
        bad = job; bad.topk = 0;
        expect_invalid(a, bad, "topk 0");
        bad = job; bad.topk = 1.5;
        expect_invalid(a, bad, "topk 1.5");
        bad = job; bad.attention = 7;
        expect_invalid(a, bad, "attention 7");
        bad = job; bad.prompt = "";
        expect_invalid(a, bad, "no prompt");
        bad = job; bad.on_frame = NULL;
        expect_invalid(a, bad, "on_frame");
        bad = job; bad.image = (const uint8_t *)"rgb"; bad.image_width = 1; bad.image_height = 1;
        bad.image_linesize = 2;
        expect_invalid(a, bad, "linesize");

        bad = job; bad.sampler = 4;
        expect_invalid(a, bad, "sampler 4");
        bad = job; bad.timesteps = "1000,1000";
        expect_invalid(a, bad, "timesteps '1000,1000': timesteps must decrease");
        bad = job; bad.timesteps = "1000,757.5";
        expect_invalid(NULL, bad, "timesteps '1000,757.5'");

        /* Without a job error sink the message stays with the engine. */
        bad = job; bad.steps = 9;
        CHECK(td_job_validate(a, &bad) == TD_EINVAL && strstr(td_engine_errmsg(a), "steps 9"),
              "engine errmsg: %s", td_engine_errmsg(a));
    }

    /* Models load when the engine opens: a file that is no weight file is
     * an error naming it there, not in the first job. */
    mkdir_rel("broken");
    touch("broken/dit.safetensors");
    link_fixture("broken/vae.safetensors", TINY_VAE);
    link_fixture("broken/t5.safetensors", TINY_T5);
    link_fixture("broken/spiece.model", TINY_SPM);
    write_rel("broken/turbodiff.json", "{\"dit\": \"dit.safetensors\", \"vae\": \"vae.safetensors\", "
              "\"t5\": \"t5.safetensors\", \"tokenizer\": \"spiece.model\"}");
    ret = open_dir("broken", &b, &err);
    CHECK(ret == TD_EFORMAT && !b && strstr(err.msg, "dit.safetensors") &&
          strstr(err.msg, "too short"), "a broken DiT fails at open: %d %s", ret, err.msg);

    /* A Wan2.2 VAE (48 latent channels at 1/16) with a Wan2.1 DiT (16 at
     * the pipeline's 1/8): refused at open, naming both files. */
    mkdir_rel("vae22");
    link_fixture("vae22/dit.safetensors", TINY_DIT);
    link_fixture("vae22/vae.pth", TD_ROOT "/tests/data/vae22/vae22_wan.pth");
    link_fixture("vae22/t5.safetensors", TINY_T5);
    link_fixture("vae22/spiece.model", TINY_SPM);
    write_rel("vae22/turbodiff.json", "{\"dit\": \"dit.safetensors\", \"vae\": \"vae.pth\", "
              "\"t5\": \"t5.safetensors\", \"tokenizer\": \"spiece.model\"}");
    ret = open_dir("vae22", &b, &err);
    CHECK(ret == TD_EUNSUPPORTED && !b && strstr(err.msg, "vae22_wan.pth") &&
          strstr(err.msg, "48 latent channels") && strstr(err.msg, "dit.safetensors"),
          "a Wan2.2 VAE with a Wan2.1 DiT fails at open: %d %s", ret, err.msg);

    /* A CUDA device where there is none, or in a build without CUDA: a
     * clear refusal at open. */
    td_engine_config_default(&cfg);
    snprintf(path, sizeof(path), "%s/manifest", root);
    cfg.model_dir = path;
    cfg.device = "cuda";
    ret = td_engine_open(&cfg, &b, &err);
#ifdef TD_HAVE_CUDA
    if (td_cuda_device_count() == 0)
        CHECK(ret == TD_EDEVICE && strstr(err.msg, "no CUDA device is present"), "%d %s", ret, err.msg);
#else
    CHECK(ret == TD_EUNSUPPORTED && strstr(err.msg, "built without CUDA"), "%d %s", ret, err.msg);
#endif
    td_engine_release(&b);
    td_engine_release(&a);
    td_engine_release(&a);  /* releasing NULL is a no-op */
    test_sampler_choice();

    snprintf(path, sizeof(path), "rm -rf '%s'", root);
    if (system(path)) {}
    return check_summary();
}
