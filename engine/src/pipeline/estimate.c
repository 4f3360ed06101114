/*
 * td_job_estimate: what a job will hold on the engine's device, stage by
 * stage, from the sizes the implementation allocates, and the refusal of a
 * job that cannot fit (td_job_validate, td_job_run).
 *
 * What td_generate holds in each stage (generate.c), besides the weights:
 *   text     the context [512, text_dim] (and the negative prompt's under
 *            CFG) and the umT5 encoder's activation arena (sized for 512
 *            tokens: an upper bound, as a cached prompt skips it);
 *   image    the contexts, and the image conditioning: the VAE encoder run
 *            on a counting backend (backend.h), then the DiT input buffer;
 *   denoise  the contexts, the image buffers, the DiT plan (dit_plan.c) and
 *            the sampler's latent and velocity;
 *   decode   the contexts, the image buffers, the latents on the device and
 *            the streaming decoder, run on the counting backend for its
 *            first chunks (vae.h, td_vae_decode_cost).
 * Each stage also holds the largest op workspace (backend.h) taken so far
 * in the job: the CPU keeps its tile scratch from one op to the next.
 * The weights are what each component's upload took when the engine opened
 * (models.h); with low memory the umT5 encoder is resident during the text
 * stage only and one expert of a pair at a time.
 *
 * Time: the FLOPs of the DiT forwards (formulas of dit.c's GEMMs and
 * attention) and of the VAE (counted on the counting backend), over the
 * rate of a matrix product measured once when the engine opened.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "engine.h"
#include "image_cond.h"
#include "models.h"
#include "sample/dmd.h"
#include "sample/sample.h"

/* Bytes of n elements of dtype, saturated (an absurd job must still be
 * estimated to be refused). */
static double nbytes(td_dtype dt, double n)
{
    return n * (double)td_dtype_size(dt);
}

static size_t to_size(double v)
{
    return v >= (double)SIZE_MAX ? SIZE_MAX : v <= 0 ? 0 : (size_t)v;
}

/* The FLOPs of one DiT forward over S tokens and L context rows (dit.c):
 * the block's linears, self-attention (full, or SLA's selected key blocks
 * plus its linear branch), cross-attention and FFN, plus the patch, text
 * and head projections. */
static double dit_flops(const td_dit_config *c, double S, double L, int sla, double topk)
{
    double d = c->dim, hd = c->head_dim, np = (double)c->patch[0] * c->patch[1] * c->patch[2];
    double keys = S, blk = 0;
    if (sla) {
        double nk = ceil(S / 64.0), nsel = floor(topk * nk);
        keys = fmin(S, (nsel < 1 ? 1 : nsel) * 64.0);
        blk = 6.0 * S * d * hd;   /* phi(k)^T v, phi(q) . kv, proj_l */
    }
    double block = 8.0 * S * d * d + 4.0 * S * keys * d + blk   /* self q, k, v, o; attention */
                 + 4.0 * S * d * d + 4.0 * L * d * d + 4.0 * S * L * d   /* cross */
                 + 4.0 * S * d * c->ffn_dim;                     /* FFN */
    return c->layers * block + 2.0 * S * d * np * (c->in_ch + c->out_ch) +
           2.0 * L * d * (c->text_dim + d);
}

/* The image stage on the counting backend: its peak above what came
 * before, the bytes it leaves held (the DiT input, TI2V's image latent)
 * and the encoder's FLOPs. As generate.c's image_stage: TI2V encodes the
 * image alone, the i2v models a clip of the image and zero frames. */
static int image_cost(td_ctx *ctx, const td_models *m, td_backend *cnt, int W, int H,
                      int64_t frames, const int64_t *lat, size_t *peak, size_t *ws, double *carried,
                      double *flops)
{
    td_backend *be = cnt;
    td_vae *sh = NULL;
    td_tensor one = { 0 }, first = { 0 }, y = { 0 }, xin = { 0 };
    size_t base = td_count_live(cnt);
    double f0 = td_count_flops(cnt);
    int rc;

    td_count_reset(cnt);
    TD_TRY(td_vae_shadow(m->vae, cnt, &sh));
    if (m->cfg.ti2v) {
        rc = be->ops->tensor_new(be, &one, be->act, 4, (int64_t[]){ 3, 1, H, W });
        if (rc == 0)
            rc = td_vae_encode(sh, &one, &first);
        be->ops->tensor_free(be, &one);
        if (rc == 0)
            rc = be->ops->tensor_new(be, &xin, be->act, 4, lat);
    } else {
        float host = 0;   /* never read: the counting backend's write does nothing */
        td_tensor img = td_view(&host, TD_F32, 3, (int64_t[]){ 3, H, W });
        rc = td_i2v_condition(ctx, sh, &img, frames, &y);
        if (rc == 0)
            rc = be->ops->tensor_new(be, &xin, be->act, 4, (int64_t[]){ m->cfg.in_ch, y.shape[1],
                                                                         y.shape[2], y.shape[3] });
        be->ops->tensor_free(be, &y);
    }
    *peak = td_count_peak(cnt) - base;
    *ws = td_count_workspace(cnt);
    *carried = (double)(td_count_live(cnt) - base);
    *flops = td_count_flops(cnt) - f0;
    be->ops->tensor_free(be, &xin);
    be->ops->tensor_free(be, &first);
    td_vae_shadow_free(&sh);
    return rc;
}

typedef struct stage {
    double weights, work;
} stage;

/* Stage id becomes the peak when it holds more than the peak so far (the
 * text stage, estimated first, starts it). */
static void take(td_estimate *e, int id, stage s)
{
    if (s.weights + s.work > (double)e->weights_bytes + (double)e->working_bytes || id == TD_STAGE_TEXT) {
        e->peak_stage = id;
        e->weights_bytes = to_size(s.weights);
        e->working_bytes = to_size(s.work);
    }
}

/* Whether the device's available memory already counts the weights the
 * engine holds: the CPU backend's are views of mapped files (upload makes
 * no copy), whose cached pages MemAvailable counts as reclaimable, so a job
 * fits when weights and working set together fit in it. Other backends
 * hold copies, which free memory no longer counts. */
static int weights_counted(const td_backend *be)
{
    return !strcmp(be->ops->name, "cpu");
}

/* The estimate of a validated job (engine.h), on a counting backend made
 * here. */
static int estimate(td_engine *eng, const td_job *job, td_ctx *ctx, td_estimate *e)
{
    td_models *m = eng->models;
    const td_dit_config *c = &m->cfg;
    td_dtype act = m->be->act;
    td_model_defaults d;
    td_backend *cnt = NULL;
    int s = td_vae_spatial_factor(m->vae), w, h, sampler, guided, sla, encode;
    int64_t T = 1 + (job->frames + 2) / 4, lat[4];
    double ctx_b, nctx, dits, resident, carried = 0, img_flops = 0, dec_flops = 0, lat_n, host, ws = 0;
    size_t img_peak = 0, dec_peak = 0, avail = 0, img_ws = 0, dec_ws = 0;
    int rc;

    memset(e, 0, sizeof(*e));
    snprintf(e->device, sizeof(e->device), "%s", eng->device);
    td_job_output_size(job, &w, &h);
    e->width = w, e->height = h, e->frames = job->frames;
    TD_TRY(td_job_check_model(ctx, eng, job));
    lat[0] = c->out_ch, lat[1] = T, lat[2] = h / s, lat[3] = w / s;
    lat_n = (double)lat[0] * T * lat[2] * lat[3];
    td_models_defaults(m, &eng->files, &d);
    sampler = td_job_sampler(job, &d);
    guided = sampler == TD_SAMPLER_FLOW && td_job_guided(job, &d, m->pair);
    sla = job->attention != TD_ATTN_FULL && c->has_proj_l;
    e->tokens = T / c->patch[0] * (lat[2] / c->patch[1]) * (lat[3] / c->patch[2]);
    e->text_tokens = TD_UMT5_TEXT_LEN;
    if (sampler == TD_SAMPLER_DMD) {
        td_dmd_params p;
        td_dmd_params_default(&p);
        if (job->timesteps)
            TD_TRY(td_dmd_parse_timesteps(ctx, "timesteps", job->timesteps, &p));
        e->forwards = p.steps;
    } else {
        e->forwards = sampler == TD_SAMPLER_FLOW
                          ? (job->flow_steps > 0 ? job->flow_steps : d.flow_steps) * (guided ? 2 : 1)
                          : job->steps;
    }

    /* weights: a pair's experts both resident, or one at a time */
    dits = (double)m->dit_bytes[TD_EXPERT_HIGH];
    if (m->pair)
        dits = m->low_memory ? fmax(dits, (double)m->dit_bytes[TD_EXPERT_LOW])
                             : dits + (double)m->dit_bytes[TD_EXPERT_LOW];
    resident = dits + (double)m->vae_bytes + (m->low_memory ? 0 : (double)m->t5_bytes);
    e->resident_bytes = to_size(resident);

    TD_TRY(td_backend_count_create(ctx, m->be, &cnt));
    rc = job->image ? image_cost(ctx, m, cnt, w, h, 1 + 4 * (T - 1), lat, &img_peak, &img_ws, &carried,
                                 &img_flops) : 0;
    if (rc == 0)
        rc = td_vae_decode_cost(m->vae, cnt, T, lat[2], lat[3], &dec_peak, &dec_flops);
    dec_ws = td_count_workspace(cnt);
    td_backend_destroy(&cnt);
    TD_TRY(rc);

    ctx_b = nbytes(act, (double)TD_UMT5_TEXT_LEN * c->text_dim);
    nctx = guided ? 2 : 1;
    encode = !job->context || guided;
    if (encode)
        ws = (double)td_umt5_workspace(&m->t5_dims, m->be, TD_UMT5_TEXT_LEN);
    take(e, TD_STAGE_TEXT, (stage){
        resident + (encode && m->low_memory ? (double)m->t5_bytes : 0),
        nctx * ctx_b + ws + (encode ? (double)td_umt5_scratch_bytes(&m->t5_dims, act, TD_UMT5_TEXT_LEN) : 0) });
    if (job->image) {
        ws = fmax(ws, (double)img_ws);
        take(e, TD_STAGE_IMAGE_ENCODE, (stage){ resident, nctx * ctx_b + ws + (double)img_peak });
    }
    ws = fmax(ws, (double)td_dit_workspace(c, m->be, T, lat[2], lat[3], TD_UMT5_TEXT_LEN, sla));
    take(e, TD_STAGE_DENOISE, (stage){
        resident, nctx * ctx_b + carried + 2 * nbytes(act, lat_n) + ws +
                      (double)td_dit_plan_bytes(c, act, T, lat[2], lat[3], TD_UMT5_TEXT_LEN) });
    ws = fmax(ws, (double)dec_ws);
    take(e, TD_STAGE_DECODE, (stage){ resident, nctx * ctx_b + carried + nbytes(act, lat_n) + ws +
                                                    (double)dec_peak });
    e->peak_bytes = to_size((double)e->weights_bytes + (double)e->working_bytes);

    /* host: the latents (f32) and the sampler's state (rcm.c and dmd.c:
     * f64 x, f32 v and noise; flow_match.c: five f64 and three f32 buffers), one
     * decoded chunk of 4 frames and one packed frame */
    host = lat_n * (4.0 + (sampler == TD_SAMPLER_FLOW ? 5 * 8 + 3 * 4 : 8 + 4 + 4)) +
           (3.0 * 4 + 3) * 4 * (double)w * h;
    e->host_bytes = to_size(host);

    if (m->be->ops->available && m->be->ops->available(m->be, &avail) < 0)
        return td_fail(ctx, ctx->err ? ctx->err : TD_EDEVICE, "%s", m->be->ctx->errmsg);
    e->available_bytes = avail;
    e->limit_bytes = job->max_memory ? job->max_memory
                                     : weights_counted(m->be) ? avail
                                     : to_size((double)avail + (double)e->resident_bytes);

    e->flops = e->forwards * dit_flops(c, (double)e->tokens, TD_UMT5_TEXT_LEN, sla, job->topk) +
               img_flops + dec_flops;
    e->flops_per_second = eng->flops_per_second;
    e->seconds = e->flops_per_second > 0 ? e->flops / e->flops_per_second : 0;
    return 0;
}

/* The memory the job is held to: its peak on the device, and on the CPU
 * its host buffers too (the same memory). */
static double needed(const td_engine *eng, const td_estimate *e)
{
    return (double)e->peak_bytes + (!strcmp(eng->device, "cpu") ? (double)e->host_bytes : 0);
}

static void human(char *buf, size_t size, double b)
{
    if (b >= 1024.0 * 1024 * 1024)
        snprintf(buf, size, "%.1f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024)
        snprintf(buf, size, "%.1f MiB", b / (1024.0 * 1024));
    else
        snprintf(buf, size, "%.1f KiB", b / 1024.0);
}

int td_estimate_check(td_engine *eng, const td_job *job, td_ctx *ctx)
{
    td_estimate e;
    char need[32], wb[32], work[32], hb[32], lim[32], res[32], av[32], why[160];

    TD_TRY(estimate(eng, job, ctx, &e));
    if (needed(eng, &e) <= (double)e.limit_bytes)
        return 0;
    human(need, sizeof(need), needed(eng, &e));
    human(wb, sizeof(wb), (double)e.weights_bytes);
    human(work, sizeof(work), (double)e.working_bytes);
    human(hb, sizeof(hb), (double)e.host_bytes);
    human(lim, sizeof(lim), (double)e.limit_bytes);
    human(res, sizeof(res), (double)e.resident_bytes);
    human(av, sizeof(av), (double)e.available_bytes);
    if (job->max_memory)
        snprintf(why, sizeof(why), "max_memory is %s", lim);
    else if (weights_counted(eng->models->be))
        snprintf(why, sizeof(why), "%s is available", lim);
    else
        snprintf(why, sizeof(why), "%s is available (%s free plus the %s of weights already loaded)",
                 lim, av, res);
    return td_fail(ctx, TD_ENOMEM, "%dx%d x %d frames needs about %s on %s (weights %s, working set %s%s%s) "
                   "but %s: use a smaller size or fewer frames%s, or raise max_memory",
                   e.width, e.height, e.frames, need, e.device, wb, work,
                   strcmp(eng->device, "cpu") ? "" : ", host buffers ", strcmp(eng->device, "cpu") ? "" : hb,
                   why, eng->low_memory ? "" : ", low_memory=1");
}

int td_job_estimate(td_engine *eng, const td_job *job, td_estimate *out)
{
    td_ctx ctx;
    int ret;

    td_ctx_init(&ctx);
    if (!eng || !job || !out) {
        td_fail(&ctx, TD_EINVAL, "td_job_estimate: NULL %s", !eng ? "engine" : !job ? "job" : "output");
        return td_job_report(eng, job, &ctx);
    }
    if ((ret = td_job_check(&ctx, job)) < 0 || (ret = estimate(eng, job, &ctx, out)) < 0)
        return td_job_report(eng, job, &ctx);
    return 0;
}

/* Products of 256x512 by 512x512 in batches that double until one takes
 * 10 ms (the result read back, so an asynchronous device has finished):
 * about 20 ms at open on a CPU. */
static int probe(td_backend *be, double *rate)
{
    enum { M = 256, K = 512, N = 512 };
    td_tensor a = { 0 }, b = { 0 }, y = { 0 }, host = { 0 };
    double t0, dt = 0;
    int k = 1, rc;

    *rate = 0;
    rc = be->ops->tensor_new(be, &a, be->act, 2, (int64_t[]){ M, K });
    if (rc == 0)
        rc = be->ops->tensor_new(be, &b, be->act, 2, (int64_t[]){ N, K });
    if (rc == 0)
        rc = be->ops->tensor_new(be, &y, be->act, 2, (int64_t[]){ M, N });
    if (rc == 0)
        rc = td_tensor_new(be->ctx, &host, TD_F32, 2, (int64_t[]){ M, N });
    if (rc == 0)
        rc = be->ops->fill(be, &a, 0.5f);
    if (rc == 0)
        rc = be->ops->fill(be, &b, 0.25f);
    /* the first product warms caches and the device up */
    for (int first = 1; rc == 0; first = 0, k *= 2) {
        int n = first ? 1 : k;
        t0 = td_now();
        for (int i = 0; rc == 0 && i < n; i++)
            rc = be->ops->matmul(be, &a, &b, 1, 1.0f, 0.0f, &y);
        if (rc == 0)
            rc = be->ops->read(be, &y, &host);
        dt = td_now() - t0;
        if (!first && (dt >= 0.01 || k >= 4096))
            break;
    }
    if (rc == 0 && dt > 0)
        *rate = 2.0 * M * N * K * k / dt;
    td_tensor_free(&host);
    be->ops->tensor_free(be, &y);
    be->ops->tensor_free(be, &b);
    be->ops->tensor_free(be, &a);
    return rc;
}

void td_engine_probe(td_engine *eng)
{
    if (probe(eng->models->be, &eng->flops_per_second) < 0) {
        td_log(&eng->ctx, TD_LOG_VERBOSE, "no time estimates: the throughput probe failed: %s",
               eng->ctx.errmsg);
        td_ctx_clear(&eng->ctx);
        eng->flops_per_second = 0;
    }
}
