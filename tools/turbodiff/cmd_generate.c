/*
 * turbodiff generate: one clip through the public API (td_engine_open +
 * td_job_run), the same path the FFmpeg filters take. Frames stream into a
 * .y4m as the VAE decodes them; a progress line goes to stderr and, with
 * --json, per-stage timings to stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "core/tensor.h"
#include "io/npy.h"
#include "turbodiff.h"

typedef struct gen_out {
    FILE *f;
    int frames, failed;
    double stage_end[TD_STAGE_DONE + 1];
    int json;
} gen_out;

static const char *const stage_name[] = { "text", "image", "denoise", "decode", "done" };

static void usage(FILE *f)
{
    fprintf(f,
        "usage: turbodiff generate (--model DIR | --dit F --vae F --t5 F [--tokenizer F])\n"
        "                          (--prompt TEXT | --context-from EMB.npy) --out CLIP.y4m [options]\n"
        "  --model DIR          model directory (upstream file names or turbodiff.json)\n"
        "  --dit/--vae/--t5/--tokenizer F   explicit files, override the directory\n"
        "  --prompt TEXT        what to generate (needs the tokenizer)\n"
        "  --context-from F     precomputed text embedding [L, text_dim] f32 .npy\n"
        "  --size WxH           multiples of 16 (default 832x480)\n"
        "  --frames N           exactly N frames (default 81)\n"
        "  --steps N            rCM steps 1..4 (default 4)\n"
        "  --seed N             noise seed (default 0)\n"
        "  --sigma-max S        initial sigma (default: the model's, 80 for t2v)\n"
        "  --attention MODE     full, sla or sagesla (default sla; full if the DiT has no SLA weights)\n"
        "  --topk K             SLA key-block fraction in (0, 1] (default 0.1)\n"
        "  --ode                deterministic rCM steps\n"
        "  --threads N          CPU threads (default all cores)\n"
        "  --json               print per-stage timings as JSON on stdout\n");
}

static int on_frame(void *opaque, const td_frame *fr)
{
    gen_out *o = opaque;
    int64_t W = fr->width, H = fr->height, plane = W * H;
    uint8_t *buf = malloc((size_t)(plane * 3 / 2));
    const uint8_t *rgb = fr->data;

    if (!buf)
        return o->failed = 1;
    /* BT.601 limited range, 4:2:0 with each chroma sample the mean of its 2x2 */
    for (int64_t i = 0; i < plane; i++)
        buf[i] = (uint8_t)(16.5 + (65.481 * rgb[3 * i] + 128.553 * rgb[3 * i + 1] + 24.966 * rgb[3 * i + 2]) / 255);
    for (int64_t y = 0; y < H / 2; y++)
        for (int64_t x = 0; x < W / 2; x++) {
            double r = 0, g = 0, b = 0;
            for (int d = 0; d < 4; d++) {
                const uint8_t *p = rgb + fr->linesize * (2 * y + d / 2) + 3 * (2 * x + d % 2);
                r += p[0] / 4.0;
                g += p[1] / 4.0;
                b += p[2] / 4.0;
            }
            buf[plane + y * (W / 2) + x] = (uint8_t)(128.5 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255);
            buf[plane * 5 / 4 + y * (W / 2) + x] = (uint8_t)(128.5 + (112.0 * r - 93.786 * g - 18.214 * b) / 255);
        }
    if ((fr->index == 0 && fprintf(o->f, "YUV4MPEG2 W%lld H%lld F16:1 Ip A1:1 C420jpeg\n",
                                   (long long)W, (long long)H) < 0) ||
        fputs("FRAME\n", o->f) < 0 || fwrite(buf, 1, (size_t)(plane * 3 / 2), o->f) != (size_t)(plane * 3 / 2))
        o->failed = 1;
    free(buf);
    o->frames++;
    return o->failed;
}

static void on_progress(void *opaque, const td_progress *p)
{
    gen_out *o = opaque;
    if (p->stage >= 0 && p->stage <= TD_STAGE_DONE)
        o->stage_end[p->stage] = p->total_seconds;
    if (p->stage == TD_STAGE_DONE) {
        fprintf(stderr, "\rturbodiff: done in %.1f s%30s\n", p->total_seconds, "");
        return;
    }
    /* ETA from the mean time per completed step of this stage */
    double eta = p->step > 0 ? p->stage_seconds / p->step * (p->steps - p->step) : 0;
    fprintf(stderr, "\rturbodiff: %-7s %d/%d  %.1f s  eta %.1f s ", stage_name[p->stage], p->step,
            p->steps, p->total_seconds, eta);
}

static void on_log(void *opaque, int level, const char *msg)
{
    (void)opaque;
    fprintf(stderr, "\nturbodiff: %s%s\n", level <= TD_LOG_WARNING ? "warning: " : "", msg);
}

static int parse_attention(const char *s)
{
    return !strcmp(s, "full") ? TD_ATTN_FULL : !strcmp(s, "sla") ? TD_ATTN_SLA
         : !strcmp(s, "sagesla") ? TD_ATTN_SAGESLA : -1;
}

int cmd_generate(int argc, char **argv)
{
    td_engine_config cfg;
    td_job job;
    td_engine *eng = NULL;
    td_error err = { 0 };
    td_ctx ctx;
    td_tensor emb = { 0 };
    gen_out o = { 0 };
    const char *out = NULL, *context = NULL;
    int rc;

    td_engine_config_default(&cfg);
    td_job_default(&job);
    td_ctx_init(&ctx);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--ode")) { job.ode = 1; continue; }
        if (!strcmp(a, "--json")) { o.json = 1; continue; }
        if (!v) {
            fprintf(stderr, "turbodiff generate: option '%s' is unknown or needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model")) cfg.model_dir = v;
        else if (!strcmp(a, "--dit")) cfg.dit = v;
        else if (!strcmp(a, "--vae")) cfg.vae = v;
        else if (!strcmp(a, "--t5")) cfg.t5 = v;
        else if (!strcmp(a, "--tokenizer")) cfg.tokenizer = v;
        else if (!strcmp(a, "--prompt")) job.prompt = v;
        else if (!strcmp(a, "--context-from")) context = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--size")) {
            if (sscanf(v, "%dx%d", &job.width, &job.height) != 2) end = (char *)v;
        } else if (!strcmp(a, "--frames")) job.frames = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--steps")) job.steps = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--seed")) job.seed = strtoull(v, &end, 10);
        else if (!strcmp(a, "--sigma-max")) job.sigma_max = strtod(v, &end);
        else if (!strcmp(a, "--topk")) job.topk = strtod(v, &end);
        else if (!strcmp(a, "--threads")) cfg.threads = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--attention")) {
            if ((job.attention = parse_attention(v)) < 0) end = (char *)v;
        } else {
            fprintf(stderr, "turbodiff generate: unknown option '%s'\n", a);
            return 2;
        }
        if (end && *end) {
            fprintf(stderr, "turbodiff generate: bad value '%s' for %s\n", v, a);
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "turbodiff generate: --out CLIP.y4m is required\n");
        return 2;
    }
    if (context) {
        if (td_npy_read(&ctx, context, &emb) < 0 || emb.ndim != 2 || emb.dtype != TD_F32) {
            fprintf(stderr, "turbodiff generate: %s\n", ctx.err ? ctx.errmsg : "--context-from must be a 2-D f32 .npy");
            td_tensor_free(&emb);
            return 1;
        }
        job.context = emb.data;
        job.context_len = (int)emb.shape[0];
        job.context_dim = (int)emb.shape[1];
    }
    job.on_frame = on_frame;
    job.on_progress = on_progress;
    job.log = on_log;
    job.opaque = &o;
    job.error = &err;
    rc = td_job_validate(NULL, &job);
    if (rc == 0)
        rc = td_engine_open(&cfg, &eng, &err);
    if (rc == 0 && !(o.f = fopen(out, "wb")))
        snprintf(err.msg, sizeof(err.msg), "cannot create %s", out), rc = TD_EIO;
    if (rc == 0)
        rc = td_job_run(eng, &job);
    if (o.f && fclose(o.f) != 0)
        o.failed = 1;
    if (rc == 0 && o.failed)
        snprintf(err.msg, sizeof(err.msg), "cannot write %s", out), rc = TD_EIO;
    if (rc < 0)
        fprintf(stderr, "\nturbodiff generate: %s\n", err.msg);
    else if (o.json) {
        double prev = 0;
        printf("{\"frames\": %d, \"width\": %d, \"height\": %d, \"seed\": %llu, \"stages\": {",
               o.frames, job.width, job.height, (unsigned long long)job.seed);
        for (int s = TD_STAGE_TEXT, first = 1; s < TD_STAGE_DONE; s++) {
            if (o.stage_end[s] <= 0)
                continue;
            printf("%s\"%s\": %.3f", first ? "" : ", ", stage_name[s], o.stage_end[s] - prev);
            prev = o.stage_end[s];
            first = 0;
        }
        printf("}, \"total\": %.3f}\n", o.stage_end[TD_STAGE_DONE]);
    }
    td_engine_release(&eng);
    td_tensor_free(&emb);
    return rc < 0 ? 1 : 0;
}
