/*
 * turbodiff dit-forward: one Wan DiT forward pass on .npy arrays (parity
 * tier). turbodiff t2v: text-to-video latents with the rCM sampler over the
 * DiT from a precomputed text embedding, optionally decoded by the Wan VAE.
 * turbodiff i2v: the same over a Wan2.2 I2V DiT (36 input channels), the
 * image conditioning given as the 20 channels Wan concatenates after the 16
 * noisy ones. Both take a second, low-noise expert (Wan2.2 A14B) with
 * --dit-low, switched to once t < --boundary (TurboDiffusion
 * wan2.2_i2v_infer.py).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "core/pool.h"
#include "dit/dit.h"
#include "io/npy.h"
#include "io/weights.h"
#include "lora_arg.h"
#include "sample/rcm.h"
#include "vae/vae.h"
#include "y4m.h"

/* What the command does; t2v and i2v share the sampler options. */
enum { MODE_FORWARD, MODE_T2V, MODE_I2V };

typedef struct dit_args {
    const char *dit, *dit_low, *cond, *latents, *context, *out, *noise, *save, *vae;
    double t, t_first, topk, sigma_max, boundary;
    int heads, threads, steps, frames, width, height, ode, text_len, has_t, has_t_first, has_boundary;
    unsigned long long seed;
    td_dit_attn attn;
    lora_args lora;
} dit_args;

static void usage(FILE *f, int mode)
{
    if (mode == MODE_FORWARD)
        fprintf(f, "usage: turbodiff dit-forward --dit FILE --latents X.npy --t T --context C.npy --out V.npy\n"
                   "                             [--heads N] [--attention full|sla] [--topk K] [--threads N]\n"
                   "                             [--lora FILE[=SCALE]]...\n"
                   "  X.npy: [C_in, F, H, W] f32 latents; C.npy: [L, text_dim] f32 (no padding is added)\n"
                   "  --t: the DiT timestep as the model takes it (rectified-flow t * 1000)\n"
                   "  --t-first T: the first latent frame's tokens take timestep T (Wan2.2 TI2V's\n"
                   "               per-token timesteps; 0 for a clean image frame; default --t)\n"
                   "  --heads: attention heads (default dim / 128, Wan's head_dim)\n"
                   "  --attention sla needs an SLA checkpoint (proj_l); --topk default 0.1\n"
                   "  --lora: merge a LoRA into the DiT at load, SCALE default 1 (repeatable)\n");
    else
        fprintf(f, "usage: turbodiff %s --dit FILE%s --context-from EMB.npy --save-latents L.npy\n"
                   "                     [--dit-low FILE [--boundary B]]\n"
                   "                     [--frames N] [--size WxH] [--steps N] [--sigma-max S] [--seed N]\n"
                   "                     [--ode] [--noise-from NOISE.npy] [--attention full|sla] [--topk K]\n"
                   "                     [--heads N] [--text-len N] [--threads N] [--vae FILE --out CLIP.y4m|.npy]\n"
                   "                     [--lora FILE[=SCALE]]...\n"
                   "  EMB.npy: [L, text_dim] text-encoder output; padded with zero rows to --text-len\n"
                   "           (default 512, as Wan does; 0: as given)\n"
                   "%s"
                   "  --dit-low: the low-noise expert of a Wan2.2 A14B pair (--dit is the high-noise one),\n"
                   "             used from the first step with t < --boundary (default 0.9)\n"
                   "  --frames 1+4k (default 81), --size multiples of 16 (default 832x480)\n"
                   "  --steps 1..4 (default 4), --sigma-max (default %s), stochastic unless --ode\n"
                   "  NOISE.npy: [count, 16, T, H/8, W/8] (or [count, numel]) noises instead of --seed\n"
                   "  --lora: merge a LoRA into the DiT (both experts) at load, SCALE default 1 (repeatable)\n",
                mode == MODE_I2V ? "i2v" : "t2v", mode == MODE_I2V ? " --cond-from Y.npy" : "",
                mode == MODE_I2V ? "  Y.npy: [20, T, H/8, W/8] conditioning: 4 first-frame mask channels, then the\n"
                                   "         16 VAE latents of the image followed by zero frames (Wan2.2 I2V's y)\n" : "",
                mode == MODE_I2V ? "200" : "80");
}

static int parse_size(const char *s, int *w, int *h)
{
    char x;
    return sscanf(s, "%d%c%d", w, &x, h) == 3 && (x == 'x' || x == 'X') && *w > 0 && *h > 0;
}

static int parse(int argc, char **argv, int mode, dit_args *a)
{
    int t2v = mode != MODE_FORWARD;   /* the sampling commands' options */
    a->attn.mode = TD_DIT_ATTN_FULL;
    a->topk = 0.1;
    a->steps = 4;
    a->sigma_max = mode == MODE_I2V ? 200 : 80;   /* TurboDiffusion's defaults */
    a->boundary = 0.9;
    a->frames = 81;
    a->width = 832;
    a->height = 480;
    a->text_len = 512;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout, mode);
            return 1;
        }
        if (t2v && !strcmp(o, "--ode")) {
            a->ode = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "turbodiff %s: '%s' needs a value or is unknown\n", argv[0], o);
            usage(stderr, mode);
            return 2;
        }
        i++;
        if (!strcmp(o, "--dit"))
            a->dit = v;
        else if (!strcmp(o, "--lora")) {
            if (!lora_arg_add(&a->lora, argv[0], argv[i]))
                return 2;
        }
        else if (!strcmp(o, "--heads"))
            a->heads = atoi(v);
        else if (!strcmp(o, "--threads"))
            a->threads = atoi(v);
        else if (!strcmp(o, "--topk"))
            a->topk = atof(v);
        else if (!strcmp(o, "--attention")) {
            if (!strcmp(v, "full"))
                a->attn.mode = TD_DIT_ATTN_FULL;
            else if (!strcmp(v, "sla"))
                a->attn.mode = TD_DIT_ATTN_SLA;
            else {
                fprintf(stderr, "turbodiff %s: --attention %s: expected full or sla\n", argv[0], v);
                return 2;
            }
        } else if (!t2v && !strcmp(o, "--latents"))
            a->latents = v;
        else if (!t2v && !strcmp(o, "--t")) {
            a->t = atof(v);
            a->has_t = 1;
        } else if (!t2v && !strcmp(o, "--t-first")) {
            a->t_first = atof(v);
            a->has_t_first = 1;
        } else if (!t2v && !strcmp(o, "--context"))
            a->context = v;
        else if (!strcmp(o, "--out"))
            a->out = v;
        else if (t2v && !strcmp(o, "--context-from"))
            a->context = v;
        else if (t2v && !strcmp(o, "--save-latents"))
            a->save = v;
        else if (t2v && !strcmp(o, "--noise-from"))
            a->noise = v;
        else if (t2v && !strcmp(o, "--dit-low"))
            a->dit_low = v;
        else if (t2v && !strcmp(o, "--boundary")) {
            a->boundary = atof(v);
            a->has_boundary = 1;
        } else if (mode == MODE_I2V && !strcmp(o, "--cond-from"))
            a->cond = v;
        else if (t2v && !strcmp(o, "--vae"))
            a->vae = v;
        else if (t2v && !strcmp(o, "--steps"))
            a->steps = atoi(v);
        else if (t2v && !strcmp(o, "--sigma-max"))
            a->sigma_max = atof(v);
        else if (t2v && !strcmp(o, "--seed"))
            a->seed = strtoull(v, NULL, 10);
        else if (t2v && !strcmp(o, "--frames"))
            a->frames = atoi(v);
        else if (t2v && !strcmp(o, "--text-len"))
            a->text_len = atoi(v);
        else if (t2v && !strcmp(o, "--size")) {
            if (!parse_size(v, &a->width, &a->height)) {
                fprintf(stderr, "turbodiff %s: --size %s: expected WxH\n", argv[0], v);
                return 2;
            }
        } else {
            fprintf(stderr, "turbodiff %s: unknown option '%s'\n", argv[0], o);
            usage(stderr, mode);
            return 2;
        }
    }
    a->attn.topk = a->topk;
    if (!a->dit || !a->context || (!t2v && (!a->latents || !a->has_t || !a->out)) ||
        (t2v && !a->save && !a->vae) || (t2v && a->vae && !a->out) || (mode == MODE_I2V && !a->cond)) {
        usage(stderr, mode);
        return 2;
    }
    if (a->has_boundary && !a->dit_low) {
        fprintf(stderr, "turbodiff %s: --boundary needs --dit-low (the low-noise expert)\n", argv[0]);
        return 2;
    }
    return 0;
}

/* Drop leading dims of 1 down to `ndim`. */
static int squeeze_to(td_ctx *ctx, td_tensor *t, int ndim, const char *what, const char *path)
{
    char s[96];
    while (t->ndim > ndim && t->shape[0] == 1) {
        memmove(t->shape, t->shape + 1, (size_t)(t->ndim - 1) * sizeof(t->shape[0]));
        memmove(t->stride, t->stride + 1, (size_t)(t->ndim - 1) * sizeof(t->stride[0]));
        t->ndim--;
    }
    if (t->ndim != ndim || t->dtype != TD_F32)
        return td_fail(ctx, TD_ESHAPE, "%s %s: %s must be f32 with %d dims", what, path,
                       td_shape_str(t, s, sizeof(s)), ndim);
    return 0;
}

typedef struct session {
    td_ctx ctx;
    td_backend *be;
    td_weights *w, *w_low;
    td_dit *dit, *dit_low;   /* dit_low: the low-noise expert, or NULL */
} session;

static int open_session(session *s, const dit_args *a)
{
    td_dit_opts opts = { a->heads, a->lora.l, a->lora.n };
    td_ctx_init(&s->ctx);
    TD_TRY(td_pool_create(&s->ctx, a->threads, &s->ctx.pool));
    TD_TRY(td_backend_cpu_create(&s->ctx, 0, &s->be));
    TD_TRY(td_weights_open(&s->ctx, a->dit, &s->w));
    TD_TRY(td_dit_load(&s->ctx, s->be, s->w, &opts, &s->dit));
    if (!a->dit_low)
        return 0;
    TD_TRY(td_weights_open(&s->ctx, a->dit_low, &s->w_low));
    return td_dit_load(&s->ctx, s->be, s->w_low, &opts, &s->dit_low);
}

static void close_session(session *s)
{
    td_dit_free(&s->dit_low);
    td_weights_close(&s->w_low);
    td_dit_free(&s->dit);
    td_weights_close(&s->w);
    td_backend_destroy(&s->be);
    td_pool_destroy(&s->ctx.pool);
}

/* A backend tensor of host's shape in the activation dtype, holding host. */
static int to_backend(session *s, const td_tensor *host, td_tensor *dev)
{
    TD_TRY(s->be->ops->tensor_new(s->be, dev, s->be->act, host->ndim, host->shape));
    return s->be->ops->write(s->be, dev, host);
}

static int dit_forward(session *s, const dit_args *a)
{
    td_backend *be = s->be;
    td_tensor x = { 0 }, c = { 0 }, out = { 0 }, xd = { 0 }, cd = { 0 }, od = { 0 };
    const td_dit_config *cfg;
    int rc = td_npy_read(&s->ctx, a->latents, &x);
    if (rc == 0)
        rc = squeeze_to(&s->ctx, &x, 4, "latents", a->latents);
    if (rc == 0)
        rc = td_npy_read(&s->ctx, a->context, &c);
    if (rc == 0)
        rc = squeeze_to(&s->ctx, &c, 2, "context", a->context);
    if (rc == 0) {
        cfg = td_dit_get_config(s->dit);
        rc = td_tensor_new(&s->ctx, &out, TD_F32, 4, (int64_t[]){ cfg->out_ch, x.shape[1], x.shape[2], x.shape[3] });
    }
    if (rc == 0)
        rc = to_backend(s, &x, &xd);
    if (rc == 0)
        rc = to_backend(s, &c, &cd);
    if (rc == 0)
        rc = be->ops->tensor_new(be, &od, be->act, 4, out.shape);
    if (rc == 0)
        rc = td_dit_forward_first(s->dit, NULL, &xd, a->t, a->has_t_first ? a->t_first : a->t, &cd,
                                  &a->attn, &od);
    if (rc == 0)
        rc = be->ops->read(be, &od, &out);
    if (rc == 0)
        rc = td_npy_write(&s->ctx, a->out, &out);
    be->ops->tensor_free(be, &xd);
    be->ops->tensor_free(be, &cd);
    be->ops->tensor_free(be, &od);
    td_tensor_free(&x);
    td_tensor_free(&c);
    td_tensor_free(&out);
    return rc;
}

/* What the denoiser needs, all on the session's backend. */
typedef struct t2v_model {
    session *s;
    td_dit_plan *plan;       /* one for the run, shared by the experts */
    td_tensor context;       /* [L, text_dim] */
    const td_dit_attn *attn;
    td_tensor input;         /* i2v: [16 + C_cond, T, h, w], x then the conditioning; else unset */
} t2v_model;

static void t2v_model_free(t2v_model *m)
{
    td_backend *be = m->s->be;
    td_dit_plan_free(&m->plan);
    be->ops->tensor_free(be, &m->context);
    be->ops->tensor_free(be, &m->input);
}

static int t2v_denoise(void *opaque, int expert, const td_tensor *x, double t, td_tensor *v)
{
    t2v_model *m = opaque;
    td_backend *be = m->s->be;
    td_dit *dit = expert == TD_EXPERT_LOW ? m->s->dit_low : m->s->dit;
    if (m->input.data) {
        /* Wan2.2 I2V (and diffusers' WanImageToVideoPipeline) feed
         * cat([x, y], dim=channels): the noisy latents first; y was
         * written behind them once. */
        td_tensor noisy;
        TD_TRY(td_tensor_slice(&m->s->ctx, &m->input, 0, 0, x->shape[0], &noisy));
        TD_TRY(be->ops->copy(be, &noisy, x, 0));
        x = &m->input;
    }
    return td_dit_forward(dit, m->plan, x, t * 1000.0, &m->context, m->attn, v);
}

static void t2v_step(void *opaque, int step, int steps, double t_next)
{
    td_log(opaque, TD_LOG_INFO, "t2v: step %d/%d done, t = %.6f", step, steps, t_next);
}

/* The context padded with zero rows to text_len (Wan pads the umT5 output to 512). */
static int load_context(td_ctx *ctx, const dit_args *a, int text_dim, td_tensor *c)
{
    td_tensor raw = { 0 };
    int64_t L;
    char s[96];
    TD_TRY(td_npy_read(ctx, a->context, &raw));
    int rc = squeeze_to(ctx, &raw, 2, "context", a->context);
    L = raw.ndim == 2 ? raw.shape[0] : 0;
    if (rc == 0 && (raw.shape[1] != text_dim || (a->text_len > 0 && L > a->text_len)))
        rc = td_fail(ctx, TD_ESHAPE, "context %s: %s must be [L <= %d, %d]", a->context,
                     td_shape_str(&raw, s, sizeof(s)), a->text_len, text_dim);
    if (rc == 0)
        rc = td_tensor_new(ctx, c, TD_F32, 2, (int64_t[]){ a->text_len > 0 ? a->text_len : L, text_dim });
    if (rc == 0)
        memcpy(c->data, raw.data, (size_t)(L * text_dim) * sizeof(float));
    td_tensor_free(&raw);
    return rc;
}

static int decode(session *s, const dit_args *a, const td_tensor *lat)
{
    td_weights *w = NULL;
    td_vae *vae = NULL;
    td_tensor frames = { 0 };
    y4m_out o = { 0 };
    size_t n = strlen(a->out);
    int y4m = n >= 4 && !strcmp(a->out + n - 4, ".y4m");
    int rc = td_weights_open(&s->ctx, a->vae, &w);
    if (rc == 0)
        rc = td_vae_load(s->be, w, &vae);
    if (rc == 0 && y4m) {
        int64_t H = lat->shape[2] * td_vae_spatial_factor(vae), W = lat->shape[3] * td_vae_spatial_factor(vae);
        o.f = fopen(a->out, "wb");
        if (!o.f)
            rc = td_fail(&s->ctx, TD_EIO, "cannot create %s", a->out);
        else if (!(o.buf = malloc((size_t)(H * W * 3 / 2))))
            rc = td_fail(&s->ctx, TD_ENOMEM, "y4m frame buffer");
        else if (y4m_header(o.f, W, H) < 0)
            rc = td_fail(&s->ctx, TD_EIO, "cannot write %s", a->out);
        if (rc == 0)
            rc = td_vae_decode(vae, lat, NULL, y4m_write_frames, &o);
        if (o.failed) {
            td_ctx_clear(&s->ctx);
            rc = td_fail(&s->ctx, TD_EIO, "cannot write %s", a->out);
        }
        free(o.buf);
        if (o.f && fclose(o.f) != 0 && rc == 0)
            rc = td_fail(&s->ctx, TD_EIO, "cannot write %s", a->out);
    } else if (rc == 0) {
        rc = td_vae_decode_all(vae, lat, NULL, &frames);
        if (rc == 0)
            rc = td_npy_write(&s->ctx, a->out, &frames);
    }
    td_tensor_free(&frames);
    td_vae_free(&vae);
    td_weights_close(&w);
    return rc;
}

/* The two experts must be interchangeable: same channels and text width. */
static int check_experts(session *s, const dit_args *a)
{
    const td_dit_config *h = td_dit_get_config(s->dit), *l;
    if (!s->dit_low)
        return 0;
    l = td_dit_get_config(s->dit_low);
    if (l->in_ch != h->in_ch || l->out_ch != h->out_ch || l->text_dim != h->text_dim)
        return td_fail(&s->ctx, TD_ESHAPE, "--dit-low %s (in %d, out %d, text %d) does not match --dit %s "
                       "(in %d, out %d, text %d)", a->dit_low, l->in_ch, l->out_ch, l->text_dim, a->dit,
                       h->in_ch, h->out_ch, h->text_dim);
    return 0;
}

/* i2v: the DiT input buffer on the backend, the conditioning [in_ch -
 * out_ch, T, h, w] read from --cond-from and written behind the noisy
 * channels once. */
static int load_cond(session *s, const dit_args *a, const int64_t *shape, td_tensor *input)
{
    const td_dit_config *cfg = td_dit_get_config(s->dit);
    int64_t want[4] = { cfg->in_ch - cfg->out_ch, shape[1], shape[2], shape[3] };
    td_tensor cond = { 0 }, dst;
    char sh[96];
    int rc;
    if (cfg->in_ch <= cfg->out_ch)
        return td_fail(&s->ctx, TD_EUNSUPPORTED, "i2v: %s takes %d input channels for %d output channels "
                       "(a text-to-video model)", a->dit, cfg->in_ch, cfg->out_ch);
    rc = td_npy_read(&s->ctx, a->cond, &cond);
    if (rc == 0)
        rc = squeeze_to(&s->ctx, &cond, 4, "conditioning", a->cond);
    for (int d = 0; rc == 0 && d < 4; d++)
        if (cond.shape[d] != want[d])
            rc = td_fail(&s->ctx, TD_ESHAPE, "i2v: --cond-from %s is %s, expected [%lld, %lld, %lld, %lld] "
                         "(mask + image latents for --frames %d --size %dx%d)", a->cond,
                         td_shape_str(&cond, sh, sizeof(sh)), (long long)want[0], (long long)want[1],
                         (long long)want[2], (long long)want[3], a->frames, a->width, a->height);
    if (rc == 0)
        rc = s->be->ops->tensor_new(s->be, input, s->be->act, 4,
                                    (int64_t[]){ cfg->in_ch, shape[1], shape[2], shape[3] });
    if (rc == 0)
        rc = td_tensor_slice(&s->ctx, input, 0, cfg->out_ch, want[0], &dst);
    if (rc == 0)
        rc = s->be->ops->write(s->be, &dst, &cond);
    td_tensor_free(&cond);
    return rc;
}

/* The denoiser's state: context and conditioning on the backend, a plan. */
static int t2v_model_init(session *s, const dit_args *a, int mode, const int64_t *shape, t2v_model *m)
{
    const td_dit_config *cfg = td_dit_get_config(s->dit);
    td_tensor ctxt = { 0 };
    int rc = load_context(&s->ctx, a, cfg->text_dim, &ctxt);
    if (rc == 0)
        rc = to_backend(s, &ctxt, &m->context);
    if (rc == 0 && mode == MODE_I2V)
        rc = load_cond(s, a, shape, &m->input);
    if (rc == 0)
        rc = td_dit_plan_new(s->dit, shape[1], shape[2], shape[3], ctxt.shape[0], &m->plan);
    td_tensor_free(&ctxt);
    return rc;
}

static int t2v(session *s, const dit_args *a, int mode)
{
    const td_dit_config *cfg = td_dit_get_config(s->dit);
    const char *cmd = mode == MODE_I2V ? "i2v" : "t2v";
    td_rcm_params p;
    td_sample_io io = { .be = s->be, .noise = { .seed = a->seed }, .on_step = t2v_step,
                        .step_opaque = &s->ctx };
    td_tensor noise = { 0 }, x = { 0 };
    t2v_model m = { .s = s, .attn = &a->attn };
    td_denoiser den = { t2v_denoise, &m };
    int64_t shape[4];
    int rc;

    if (mode == MODE_T2V && cfg->in_ch != cfg->out_ch)
        return td_fail(&s->ctx, TD_EUNSUPPORTED, "t2v: %s takes %d input channels (an image-to-video model)",
                       a->dit, cfg->in_ch);
    if (a->frames < 1 || (a->frames - 1) % 4 || a->width % 16 || a->height % 16)
        return td_fail(&s->ctx, TD_EINVAL, "%s: --frames %d must be 1 + 4k and --size %dx%d multiples of 16",
                       cmd, a->frames, a->width, a->height);
    TD_TRY(check_experts(s, a));
    td_rcm_params_default(&p);
    p.steps = a->steps;
    p.sigma_max = a->sigma_max;
    p.ode = a->ode;
    p.two_experts = s->dit_low != NULL;
    p.boundary = a->boundary;
    shape[0] = cfg->out_ch;
    shape[1] = 1 + (a->frames - 1) / 4;
    shape[2] = a->height / 8;
    shape[3] = a->width / 8;
    rc = t2v_model_init(s, a, mode, shape, &m);
    if (rc == 0 && a->noise) {
        int64_t n = shape[0] * shape[1] * shape[2] * shape[3];
        rc = td_npy_read(&s->ctx, a->noise, &noise);
        if (rc == 0 && (noise.dtype != TD_F32 || td_numel(&noise) % n || td_numel(&noise) == 0))
            rc = td_fail(&s->ctx, TD_ESHAPE, "%s: --noise-from %s holds %lld values, not a multiple of "
                         "the latent size %lld (f32)", cmd, a->noise, (long long)td_numel(&noise), (long long)n);
        io.noise.stack = noise.data;
        io.noise.count = rc == 0 ? td_numel(&noise) / n : 0;
    }
    if (rc == 0)
        rc = td_tensor_new(&s->ctx, &x, TD_F32, 4, shape);
    if (rc == 0)
        rc = td_rcm_sample(&s->ctx, &p, &den, &io, &x);
    if (rc == 0 && a->save)
        rc = td_npy_write(&s->ctx, a->save, &x);
    if (rc == 0 && a->vae)
        rc = decode(s, a, &x);
    t2v_model_free(&m);
    td_tensor_free(&noise);
    td_tensor_free(&x);
    return rc;
}

static int run(int argc, char **argv, int mode)
{
    dit_args a = { 0 };
    session s = { 0 };
    int rc = parse(argc, argv, mode, &a);
    if (rc)
        return rc == 1 ? 0 : rc;
    rc = open_session(&s, &a);
    if (rc == 0)
        rc = mode == MODE_FORWARD ? dit_forward(&s, &a) : t2v(&s, &a, mode);
    if (rc < 0)
        fprintf(stderr, "turbodiff %s: %s\n", argv[0], s.ctx.errmsg);
    close_session(&s);
    return rc < 0 ? 1 : 0;
}

int cmd_dit_forward(int argc, char **argv) { return run(argc, argv, MODE_FORWARD); }
int cmd_t2v(int argc, char **argv) { return run(argc, argv, MODE_T2V); }
int cmd_i2v(int argc, char **argv) { return run(argc, argv, MODE_I2V); }
