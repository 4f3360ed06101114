/*
 * turbodiff generate: one clip through the public API (td_engine_open +
 * td_job_run), the same path the FFmpeg filters take: text-to-video, or
 * image-to-video from a PNG. Frames stream into a .y4m and/or a PNG sequence
 * as the VAE decodes them (or are kept for a float .npy); a progress line
 * goes to stderr and, with --json, per-stage timings to stdout.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "core/tensor.h"
#include "io/npy.h"
#include "io/png.h"
#include "lora_arg.h"
#include "turbodiff.h"
#include "y4m.h"

typedef struct gen_out {
    y4m_out y4m;             /* f NULL: no .y4m asked */
    const char *png_dir;     /* frame_00000.png ... */
    float *all;              /* --save-frames: [F, H, W, 3] in [0, 1] */
    uint8_t *rgb;            /* the frame as RGB24 */
    float *rgbf;             /* the frame in [0, 255], for the .y4m */
    int frames, width, height, failed;
    char msg[sizeof(((td_error *)0)->msg)];   /* what failed, for the error line */
    double stage_end[TD_STAGE_DONE + 1];
    size_t peak_bytes;       /* the job's measured peak on the device (TD_STAGE_DONE) */
    int json;
    int tty;                 /* stderr is a terminal: progress redraws one line with \r */
    int line_open;           /* a \r progress line is on the terminal, not yet ended */
} gen_out;

static const char *const stage_name[] = { "text", "image", "denoise", "decode", "done" };

static void usage(FILE *f)
{
    fprintf(f,
        "usage: turbodiff generate [--model DIR | --dit F --vae F --t5 F [--tokenizer F]]\n"
        "                          (--prompt TEXT | --context-from EMB.npy) [--image START.png]\n"
        "                          (-o CLIP.y4m | --png-dir DIR | --save-frames F.npy) [options]\n"
        "  --model DIR          model directory (upstream file names or turbodiff.json);\n"
        "                       default: $TURBODIFF_MODEL_DIR, else the installed default model\n"
        "  --dit/--vae/--t5/--tokenizer F   explicit files, override the directory\n"
        "  --dit-low F          low-noise expert of a Wan2.2 A14B pair (--dit is the high one)\n"
        "  --lora F[=SCALE]     merge a LoRA into the DiT when it loads, SCALE default 1;\n"
        "                       repeatable, each with its own scale; replaces turbodiff.json's \"lora\"\n"
        "  --prompt TEXT        what to generate (needs the tokenizer)\n"
        "  --context-from F     precomputed text embedding [L, text_dim] f32 .npy\n"
        "  --image F            image-to-video: animate this PNG (needs an i2v DiT)\n"
        "  --adaptive           keep the image's aspect ratio at the area of --size\n"
        "  -o, --out F          write the clip as .y4m (8-bit 4:2:0, 16 fps); '-' is standard\n"
        "                       output (turbodiff generate ... -o - | ffmpeg -i - clip.mp4)\n"
        "  --png-dir DIR        write frame_00000.png ... into DIR (which must exist)\n"
        "  --save-frames F      write the frames as float32 .npy [F, H, W, 3] in [0, 1]\n"
        "  --size WxH           multiples of 16 (default: the model's native size, else 832x480)\n"
        "  --frames N           exactly N frames (default: the model's native count, else 81)\n"
        "  --steps N            rCM steps 1..4 (default 4)\n"
        "  --seed N             noise seed (default 0; -1: a random one, printed)\n"
        "  --sigma-max S        initial sigma (default: 80 text-to-video, 200 image-to-video)\n"
        "  --boundary B         A14B expert switch in (0, 1) (default: the model's, 0.875 t2v, 0.9 i2v)\n"
        "  --sampler S          auto (default: dmd for FastWan checkpoints, rcm for distilled\n"
        "                       ones, flow for Wan2.2 TI2V-5B and T2V A14B), rcm, flow (UniPC\n"
        "                       with guidance) or dmd\n"
        "  --timesteps LIST     dmd steps as DiT timesteps (default: FastWan's 1000,757,522)\n"
        "  --flow-steps N       flow matching steps 1..1000 (default: the model's, e.g. 50)\n"
        "  --shift S            flow matching sigma shift (default: the model's, e.g. 5)\n"
        "  --guidance G         classifier-free guidance scale, 1: none (default: the model's)\n"
        "  --guidance-low G     the low-noise expert's guidance (default: the model's)\n"
        "  --negative-prompt T  what guidance steers away from (default: Wan's negative prompt)\n"
        "  --attention MODE     full, sla or sagesla (default sla; full if the DiT has no SLA weights)\n"
        "  --topk K             SLA key-block fraction in (0, 1] (default 0.1)\n"
        "  --ode                deterministic rCM steps\n"
        "  --device D           auto (default: the first CUDA device, else the CPU), cpu, cuda, cuda:N\n"
        "  --threads N          CPU threads (default all cores)\n"
        "  --low-memory         unmap the text encoder after use and keep one expert mapped\n"
        "  --max-memory N       refuse the job when its estimated peak on the device is over N\n"
        "                       bytes (suffixes K, M, G, T: powers of 1000; Ki, Mi, Gi, Ti: of 1024);\n"
        "                       default: the memory the device has available\n"
        "  --json               print per-stage timings, the job's estimate, its peak on the device\n"
        "                       as the backend measured it and the process's peak resident memory\n"
        "                       as JSON on stdout\n");
}

static int write_png(gen_out *o, const td_frame *fr)
{
    char path[4096];
    td_ctx ctx;

    td_ctx_init(&ctx);
    snprintf(path, sizeof(path), "%s/frame_%05d.png", o->png_dir, fr->index);
    if (td_png_write(&ctx, path, o->rgb, fr->width, fr->height, (ptrdiff_t)fr->width * 3) < 0) {
        snprintf(o->msg, sizeof(o->msg), "%s", ctx.errmsg);
        return o->failed = 1;
    }
    return 0;
}

/* Frames come as float RGB (for --save-frames, without 8-bit rounding);
 * the 8-bit outputs round them as the library's RGB24 does. */
static int on_frame(void *opaque, const td_frame *fr)
{
    gen_out *o = opaque;
    int64_t n = (int64_t)fr->width * fr->height * 3;
    const float *src = fr->data;

    if (!o->rgb && !(o->rgb = malloc((size_t)n))) {
        snprintf(o->msg, sizeof(o->msg), "out of memory for a %dx%d frame", fr->width, fr->height);
        return o->failed = 1;
    }
    o->width = fr->width, o->height = fr->height;
    for (int64_t i = 0; i < n; i++)
        o->rgb[i] = (uint8_t)lrintf(fminf(fmaxf(src[i] * 255.0f, 0.0f), 255.0f));
    if (o->all)
        memcpy(o->all + fr->index * n, src, sizeof(float) * (size_t)n);
    if (o->y4m.f) {
        if ((!o->y4m.buf && !(o->y4m.buf = malloc((size_t)n / 2))) ||
            (!o->rgbf && !(o->rgbf = malloc(sizeof(float) * (size_t)n)))) {
            snprintf(o->msg, sizeof(o->msg), "out of memory for a %dx%d frame", fr->width, fr->height);
            return o->failed = 1;
        }
        for (int64_t i = 0; i < n; i++)
            o->rgbf[i] = src[i] * 255.0f;
        if ((fr->index == 0 && y4m_header(o->y4m.f, fr->width, fr->height) < 0) ||
            y4m_write_rgb(&o->y4m, o->rgbf, fr->width, fr->height)) {
            snprintf(o->msg, sizeof(o->msg), "cannot write the .y4m");
            return o->failed = 1;
        }
    }
    if (o->png_dir && write_png(o, fr))
        return 1;
    o->frames++;
    return 0;
}

/* On a terminal the progress line is redrawn in place; into a file or a
 * pipe (a render farm's log) each update is a line of its own. */
static void on_progress(void *opaque, const td_progress *p)
{
    gen_out *o = opaque;
    if (p->stage >= 0 && p->stage <= TD_STAGE_DONE)
        o->stage_end[p->stage] = p->total_seconds;
    if (p->stage == TD_STAGE_DONE) {
        o->peak_bytes = p->peak_bytes;
        if (o->tty)
            fprintf(stderr, "\rturbodiff: done in %.1f s%30s\n", p->total_seconds, "");
        else
            fprintf(stderr, "turbodiff: done in %.1f s\n", p->total_seconds);
        o->line_open = 0;
        return;
    }
    /* ETA from the mean time per completed step of this stage */
    double eta = p->step > 0 ? p->stage_seconds / p->step * (p->steps - p->step) : 0;
    fprintf(stderr, "%sturbodiff: %-7s %d/%d  %.1f s  eta %.1f s%s", o->tty ? "\r" : "",
            stage_name[p->stage], p->step, p->steps, p->total_seconds, eta, o->tty ? " " : "\n");
    o->line_open = o->tty;
}

/* Ends an open progress line first, so a message never shares it. */
static void end_progress_line(gen_out *o)
{
    if (o->line_open)
        fputc('\n', stderr);
    o->line_open = 0;
}

static void on_log(void *opaque, int level, const char *msg)
{
    end_progress_line(opaque);
    fprintf(stderr, "turbodiff: %s%s\n", level <= TD_LOG_WARNING ? "warning: " : "", msg);
}

static int parse_sampler(const char *s)
{
    return !strcmp(s, "auto") ? TD_SAMPLER_AUTO : !strcmp(s, "rcm") ? TD_SAMPLER_RCM
         : !strcmp(s, "flow") ? TD_SAMPLER_FLOW : !strcmp(s, "dmd") ? TD_SAMPLER_DMD : -1;
}

static int parse_attention(const char *s)
{
    return !strcmp(s, "full") ? TD_ATTN_FULL : !strcmp(s, "sla") ? TD_ATTN_SLA
         : !strcmp(s, "sagesla") ? TD_ATTN_SAGESLA : -1;
}

/* The start image of --image, as the job's RGB24 input. */
static int load_image(td_ctx *ctx, const char *path, td_job *job, uint8_t **rgb)
{
    int w, h;
    TD_TRY(td_png_read(ctx, path, rgb, &w, &h));
    job->image = *rgb;
    job->image_width = w;
    job->image_height = h;
    job->image_linesize = (ptrdiff_t)w * 3;
    return 0;
}

static int load_context(td_ctx *ctx, const char *path, td_job *job, td_tensor *emb)
{
    TD_TRY(td_npy_read(ctx, path, emb));
    if (emb->ndim != 2 || emb->dtype != TD_F32)
        return td_fail(ctx, TD_EINVAL, "%s: --context-from must be a 2-D float32 .npy", path);
    job->context = emb->data;
    job->context_len = (int)emb->shape[0];
    job->context_dim = (int)emb->shape[1];
    return 0;
}

static void print_json(const gen_out *o, const td_job *job, const td_estimate *e)
{
    struct rusage ru;
    double prev = 0;
    printf("{\"frames\": %d, \"width\": %d, \"height\": %d, \"seed\": %llu, \"stages\": {",
           o->frames, o->width, o->height, (unsigned long long)job->seed);
    for (int s = TD_STAGE_TEXT, first = 1; s < TD_STAGE_DONE; s++) {
        if (o->stage_end[s] <= 0)
            continue;
        printf("%s\"%s\": %.3f", first ? "" : ", ", stage_name[s], o->stage_end[s] - prev);
        prev = o->stage_end[s];
        first = 0;
    }
    printf("}, \"total\": %.3f, ", o->stage_end[TD_STAGE_DONE]);
    printf("\"estimate\": {\"device\": \"%s\", \"tokens\": %lld, \"text_tokens\": %d, \"forwards\": %d, "
           "\"weights_bytes\": %zu, \"working_bytes\": %zu, \"peak_bytes\": %zu, \"peak_stage\": \"%s\", "
           "\"host_bytes\": %zu, \"available_bytes\": %zu, \"limit_bytes\": %zu, \"flops\": %.6g, "
           "\"seconds\": %.3f}", e->device, (long long)e->tokens, e->text_tokens, e->forwards,
           e->weights_bytes, e->working_bytes, e->peak_bytes, stage_name[e->peak_stage], e->host_bytes,
           e->available_bytes, e->limit_bytes, e->flops, e->seconds);
    /* what the backend measured the job hold at once, counted as the
     * estimate's peak_bytes is (0 where the backend cannot tell) */
    printf(", \"measured_peak_bytes\": %zu", o->peak_bytes);
    /* Linux reports ru_maxrss in KiB: the whole process's peak, weights
     * paged in included (on the CPU the device's memory) */
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        printf(", \"max_rss_bytes\": %lld", (long long)ru.ru_maxrss * 1024);
    printf("}\n");
}

/* --max-memory: bytes, with FFmpeg's suffixes (K, M, G, T powers of 1000,
 * Ki, Mi, Gi, Ti of 1024). 0 on a bad value. */
static size_t parse_bytes(const char *v)
{
    static const char units[] = "KMGT";
    char *end;
    double n = strtod(v, &end), mult = 1;
    const char *u = *end ? strchr(units, *end) : NULL;
    if (end == v || n < 0)
        return 0;
    if (u) {
        int binary = end[1] == 'i';
        for (const char *p = units; p <= u; p++)
            mult *= binary ? 1024.0 : 1000.0;
        end += 1 + binary;
    }
    if (*end || n * mult < 1 || n * mult >= (double)SIZE_MAX)
        return 0;
    return (size_t)(n * mult);
}

/* --seed: 0 to 2^64-1, or -1 for a random seed as FFmpeg's seed options
 * take it (32 bits, like av_get_random_seed). */
static int parse_seed(const char *v, uint64_t *seed)
{
    char *end;
    uint32_t r;

    if (!strcmp(v, "-1")) {
        if (getrandom(&r, sizeof(r), 0) != sizeof(r))
            r = (uint32_t)time(NULL) ^ (uint32_t)getpid() << 16;
        *seed = r;
        return 1;
    }
    errno = 0;
    *seed = strtoull(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || *end || errno) {
        fprintf(stderr, "turbodiff generate: bad value '%s' for --seed (0 to %llu, or -1 for a "
                "random seed)\n", v, (unsigned long long)UINT64_MAX);
        return -1;
    }
    return 0;
}

/* What can be written where, checked before the engine opens so that a
 * mistake costs nothing: --out is a .y4m or '-' (standard output), and
 * --png-dir must be an existing directory. */
static int check_outputs(const char *out, const char *png_dir, int json)
{
    const char *dot = out ? strrchr(out, '.') : NULL;
    struct stat st;

    if (out && strcmp(out, "-") && (!dot || strchr(dot, '/') || strcasecmp(dot, ".y4m"))) {
        fprintf(stderr, "turbodiff generate: --out %s: the CLI writes .y4m video (--out CLIP.y4m, "
                "or --out - for standard output), PNG frames (--png-dir DIR) or float frames "
                "(--save-frames F.npy); for other formats pipe the y4m to ffmpeg: "
                "turbodiff generate ... --out - | ffmpeg -i - %s\n", out, out);
        return -1;
    }
    if (out && !strcmp(out, "-") && json) {
        fprintf(stderr, "turbodiff generate: --out - and --json both write to standard output; "
                "drop one\n");
        return -1;
    }
    if (png_dir && stat(png_dir, &st)) {
        fprintf(stderr, "turbodiff generate: --png-dir %s: %s (the directory must exist)\n",
                png_dir, strerror(errno));
        return -1;
    }
    if (png_dir && !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "turbodiff generate: --png-dir %s is not a directory\n", png_dir);
        return -1;
    }
    return 0;
}

/* An option only one sampler reads (opts[sampler]: the first given, or
 * NULL) is refused when the job runs another, as the filters refuse it,
 * rather than passed over: with --sampler before the model loads (eng
 * NULL), with auto once the model says which sampler it takes. */
static int check_sampler_options(const td_engine *eng, const td_job *job,
                                 const char *const opts[TD_SAMPLER_DMD + 1], td_error *err)
{
    static const char *const name[] = { [TD_SAMPLER_RCM] = "rcm", [TD_SAMPLER_FLOW] = "flow",
                                        [TD_SAMPLER_DMD] = "dmd" };
    static const char *const family[] = { [TD_SAMPLER_RCM] = "an rCM",
                                          [TD_SAMPLER_FLOW] = "a flow matching",
                                          [TD_SAMPLER_DMD] = "a DMD" };
    static const char *const model[] = {
        [TD_SAMPLER_RCM] = "this model samples with rCM (a TurboDiffusion checkpoint, or a DiT it distills)",
        [TD_SAMPLER_FLOW] = "this model samples with flow matching",
        [TD_SAMPLER_DMD] = "this model samples with DMD (a FastWan checkpoint)",
    };
    td_job r = *job;

    td_job_resolve(eng, &r);
    if (r.sampler == TD_SAMPLER_AUTO)
        return 0;
    for (int s = TD_SAMPLER_RCM; s <= TD_SAMPLER_DMD; s++) {
        char given[32];
        if (s == r.sampler || !opts[s])
            continue;
        snprintf(given, sizeof(given), "--sampler %s", name[r.sampler]);
        snprintf(err->msg, sizeof(err->msg), "%s is %s option, but %s: drop %s, or use --sampler %s",
                 opts[s], family[s], job->sampler == TD_SAMPLER_AUTO ? model[r.sampler] : given,
                 opts[s], name[s]);
        err->code = TD_EINVAL;
        return TD_EINVAL;
    }
    return 0;
}

int cmd_generate(int argc, char **argv)
{
    td_engine_config cfg;
    td_job job;
    td_estimate est = { 0 };
    td_engine *eng = NULL;
    td_error err = { 0 };
    td_ctx ctx;
    td_tensor emb = { 0 };
    gen_out o = { 0 };
    const char *out = NULL, *context = NULL, *image = NULL, *save = NULL;
    const char *sampler_opt[TD_SAMPLER_DMD + 1] = { 0 }; /* the first given of each sampler's */
    uint8_t *image_rgb = NULL;
    int w, h, size_given = 0, frames_given = 0, random_seed = 0, rc = 0;
    lora_args lora = { 0 };

    td_engine_config_default(&cfg);
    td_job_default(&job);
    td_ctx_init(&ctx);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--ode")) {
            job.ode = 1;
            if (!sampler_opt[TD_SAMPLER_RCM])
                sampler_opt[TD_SAMPLER_RCM] = a;
            continue;
        }
        if (!strcmp(a, "--json")) { o.json = 1; continue; }
        if (!strcmp(a, "--adaptive")) { job.adaptive_resolution = 1; continue; }
        if (!strcmp(a, "--low-memory")) { cfg.low_memory = 1; continue; }
        if (!v) {
            fprintf(stderr, "turbodiff generate: option '%s' is unknown or needs a value\n", a);
            return 2;
        }
        i++;
        if (!sampler_opt[TD_SAMPLER_FLOW] && (!strcmp(a, "--flow-steps") || !strcmp(a, "--shift") ||
                !strcmp(a, "--guidance") || !strcmp(a, "--guidance-low") ||
                !strcmp(a, "--negative-prompt")))
            sampler_opt[TD_SAMPLER_FLOW] = a;
        if (!sampler_opt[TD_SAMPLER_RCM] && (!strcmp(a, "--steps") || !strcmp(a, "--sigma-max")))
            sampler_opt[TD_SAMPLER_RCM] = a;
        if (!sampler_opt[TD_SAMPLER_DMD] && !strcmp(a, "--timesteps"))
            sampler_opt[TD_SAMPLER_DMD] = a;
        if (!strcmp(a, "--model")) cfg.model_dir = v;
        else if (!strcmp(a, "--dit")) cfg.dit = v;
        else if (!strcmp(a, "--dit-low")) cfg.dit_low = v;
        else if (!strcmp(a, "--lora")) {
            if (!lora_arg_add(&lora, "generate", argv[i]))
                return 2;
            cfg.loras = lora.l;
            cfg.n_loras = lora.n;
        }
        else if (!strcmp(a, "--vae")) cfg.vae = v;
        else if (!strcmp(a, "--t5")) cfg.t5 = v;
        else if (!strcmp(a, "--tokenizer")) cfg.tokenizer = v;
        else if (!strcmp(a, "--device")) cfg.device = v;
        else if (!strcmp(a, "--prompt")) job.prompt = v;
        else if (!strcmp(a, "--context-from")) context = v;
        else if (!strcmp(a, "--image")) image = v;
        else if (!strcmp(a, "--out") || !strcmp(a, "-o")) out = v;
        else if (!strcmp(a, "--png-dir")) o.png_dir = v;
        else if (!strcmp(a, "--save-frames")) save = v;
        else if (!strcmp(a, "--size")) {
            size_given = 1;
            if (sscanf(v, "%dx%d", &job.width, &job.height) != 2) end = (char *)v;
        } else if (!strcmp(a, "--frames")) frames_given = 1, job.frames = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--steps")) job.steps = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--seed")) {
            if ((random_seed = parse_seed(v, &job.seed)) < 0)
                return 2;
        }
        else if (!strcmp(a, "--sigma-max")) job.sigma_max = strtod(v, &end);
        else if (!strcmp(a, "--boundary")) job.boundary = strtod(v, &end);
        else if (!strcmp(a, "--flow-steps")) job.flow_steps = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--shift")) job.shift = strtod(v, &end);
        else if (!strcmp(a, "--guidance")) job.guidance = strtod(v, &end);
        else if (!strcmp(a, "--guidance-low")) job.guidance_low = strtod(v, &end);
        else if (!strcmp(a, "--negative-prompt")) job.negative_prompt = v;
        else if (!strcmp(a, "--timesteps")) job.timesteps = v;
        else if (!strcmp(a, "--sampler")) {
            if ((job.sampler = parse_sampler(v)) < 0) end = (char *)v;
        }
        else if (!strcmp(a, "--topk")) job.topk = strtod(v, &end);
        else if (!strcmp(a, "--threads")) cfg.threads = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--max-memory")) {
            if (!(job.max_memory = parse_bytes(v))) end = (char *)v;
        }
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
    if (!out && !o.png_dir && !save) {
        fprintf(stderr, "turbodiff generate: say where the clip goes: --out CLIP.y4m, --png-dir "
                "DIR or --save-frames F.npy\n");
        return 2;
    }
    if (check_outputs(out, o.png_dir, o.json) < 0)
        return 2;
    o.tty = isatty(STDERR_FILENO);
    if (random_seed)
        fprintf(stderr, "turbodiff: seed %llu\n", (unsigned long long)job.seed);
    if (context && load_context(&ctx, context, &job, &emb) < 0)
        rc = TD_EINVAL;
    if (rc == 0 && image && load_image(&ctx, image, &job, &image_rgb) < 0)
        rc = TD_EINVAL;
    if (rc < 0)
        snprintf(err.msg, sizeof(err.msg), "%s", ctx.errmsg);
    job.frame_format = TD_FRAME_RGBF32;
    job.on_frame = on_frame;
    job.on_progress = on_progress;
    job.log = on_log;
    job.log_opaque = &o;
    job.opaque = &o;
    job.error = &err;
    /* Warnings about the model files (a DiT trained for attention turbodiff
     * lacks) are the user's to see; the residency report is not. */
    cfg.log = on_log;
    cfg.log_opaque = &o;
    cfg.log_level = TD_LOG_WARNING;
    if (rc == 0)
        rc = check_sampler_options(NULL, &job, sampler_opt, &err);
    if (rc == 0)
        rc = td_engine_open(&cfg, &eng, &err);
    if (rc == 0)
        rc = check_sampler_options(eng, &job, sampler_opt, &err);
    /* What the user left unset comes from the model's native clip. */
    if (rc == 0)
        td_engine_native_clip(eng, size_given ? NULL : &job.width, size_given ? NULL : &job.height,
                              frames_given ? NULL : &job.frames);
    /* with the engine: a job that cannot fit is refused here, before any
     * output file is made */
    if (rc == 0)
        rc = td_job_validate(eng, &job);
    if (rc == 0 && o.json)
        rc = td_job_estimate(eng, &job, &est);
    td_job_output_size(&job, &w, &h);
    if (rc == 0 && save && !(o.all = malloc(sizeof(float) * 3 * (size_t)w * h * (size_t)job.frames)))
        snprintf(err.msg, sizeof(err.msg), "out of memory for %d frames of %dx%d (--save-frames)",
                 job.frames, w, h), rc = TD_ENOMEM;
    if (rc == 0 && out && !(o.y4m.f = strcmp(out, "-") ? fopen(out, "wb") : stdout))
        snprintf(err.msg, sizeof(err.msg), "cannot create %s", out), rc = TD_EIO;
    if (rc == 0)
        rc = td_job_run(eng, &job);
    if (o.y4m.f && fclose(o.y4m.f) != 0 && rc == 0)
        snprintf(o.msg, sizeof(o.msg), "cannot write %s", out), o.failed = 1;
    if (o.failed)
        snprintf(err.msg, sizeof(err.msg), "%s", o.msg), rc = TD_EIO;
    if (rc == 0 && save) {
        td_tensor t = td_view(o.all, TD_F32, 4, (int64_t[]){ job.frames, o.height, o.width, 3 });
        if ((rc = td_npy_write(&ctx, save, &t)) < 0)
            snprintf(err.msg, sizeof(err.msg), "%s", ctx.errmsg);
    }
    if (rc < 0) {
        end_progress_line(&o);
        fprintf(stderr, "turbodiff generate: %s\n", err.msg);
    }
    else if (o.json)
        print_json(&o, &job, &est);
    td_engine_release(&eng);
    td_tensor_free(&emb);
    free(image_rgb);
    free(o.all);
    free(o.rgb);
    free(o.rgbf);
    free(o.y4m.buf);
    return rc < 0 ? 1 : 0;
}
