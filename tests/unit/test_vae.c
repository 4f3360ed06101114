/*
 * Wan VAE against the committed fixtures (tests/data/vae, written by
 * tests/parity/gen_vae_fixtures.py from diffusers' AutoencoderKLWan):
 * decode and encode from Wan's .pth layout, decode from diffusers names with
 * bf16 weights; streaming pushes equal one-shot decode bit for bit, frames
 * arrive chunk by chunk (1, then 4 per latent frame), the carried state does
 * not grow with the clip; tiled vs untiled stays under the stated bound;
 * bad files and inputs fail with messages naming what is wrong. Latents and
 * frames go in as backend tensors (written from the host arrays), encoded
 * latents are read back, decoded frames arrive as host f32.
 */
#include <string.h>

#include "check.h"
#include "core/pool.h"
#include "io/npy.h"
#include "io/weights.h"
#include "vae/vae.h"

#define DIR TD_ROOT "/tests/data/vae/"
/* Tiled vs untiled relative L2 bound on a random tiny model (its mid-block
 * attention spans the whole frame, so tiles see less context than a trained
 * model's would need); the parity tier holds fresh models to the same. */
#define TILE_BOUND 0.25

typedef struct env {
    td_ctx ctx;
    td_backend *be;
} env;

static td_vae *load(env *e, const char *path, td_weights **w)
{
    td_vae *vae = NULL;
    int rc = td_weights_open(&e->ctx, path, w);
    CHECK(rc == 0, "open %s: %s", path, e->ctx.errmsg);
    if (rc == 0) {
        rc = td_vae_load(e->be, *w, &vae);
        CHECK(rc == 0, "load %s: %s", path, e->ctx.errmsg);
    }
    return vae;
}

/* The host array into a new backend tensor (zeroed on failure). */
static int to_dev(env *e, const td_tensor *host, td_tensor *dev)
{
    int rc = e->be->ops->tensor_new(e->be, dev, e->be->act, host->ndim, host->shape);
    if (rc == 0 && (rc = e->be->ops->write(e->be, dev, host)) < 0)
        e->be->ops->tensor_free(e->be, dev);
    CHECK(rc == 0, "to the backend: %s", e->ctx.errmsg);
    return rc;
}

static void dev_free(env *e, td_tensor *t)
{
    e->be->ops->tensor_free(e->be, t);
}

/* A backend tensor read back into a new host f32 tensor. */
static int from_dev(env *e, const td_tensor *dev, td_tensor *host)
{
    int rc = td_tensor_new(&e->ctx, host, TD_F32, dev->ndim, dev->shape);
    if (rc == 0 && (rc = e->be->ops->read(e->be, dev, host)) < 0)
        td_tensor_free(host);
    CHECK(rc == 0, "from the backend: %s", e->ctx.errmsg);
    return rc;
}

/* Random host values of the given shape into a new backend tensor. */
static int random_dev(env *e, test_rng *rng, int ndim, const int64_t *shape, float scale, td_tensor *dev)
{
    td_tensor host = { 0 };
    int rc = td_tensor_new(&e->ctx, &host, TD_F32, ndim, shape);
    if (rc == 0) {
        test_fill(rng, host.data, (size_t)td_numel(&host), scale);
        rc = to_dev(e, &host, dev);
    }
    td_tensor_free(&host);
    return rc;
}

static void check_close(env *e, const td_tensor *ours, const char *ref_path, double tol, const char *what)
{
    td_tensor ref = { 0 };
    int rc = td_npy_read(&e->ctx, ref_path, &ref);
    CHECK(rc == 0, "%s: %s", ref_path, e->ctx.errmsg);
    if (rc == 0) {
        int same = ref.ndim == ours->ndim;
        for (int i = 0; same && i < ref.ndim; i++)
            same = ref.shape[i] == ours->shape[i];
        CHECK(same, "%s: shape differs from %s", what, ref_path);
        if (same) {
            double err = rel_l2_ff(ours->data, ref.data, (size_t)td_numel(&ref));
            printf("%s: rel L2 %.3g\n", what, err);
            CHECK(err < tol, "%s: rel L2 %.3g >= %.3g", what, err, tol);
        }
    }
    td_tensor_free(&ref);
}

typedef struct frames_log {
    int calls;
    int64_t first[16], count[16];
    int stop_after;   /* 0: never */
} frames_log;

static int log_frames(void *opaque, int64_t first, const td_tensor *f)
{
    frames_log *l = opaque;
    if (l->calls < 16) {
        l->first[l->calls] = first;
        l->count[l->calls] = f->shape[1];
    }
    l->calls++;
    return l->stop_after && l->calls >= l->stop_after;
}

typedef struct gather {
    td_tensor *out;
} gather;

static int gather_frames(void *opaque, int64_t first, const td_tensor *f)
{
    td_tensor *o = ((gather *)opaque)->out;
    int64_t plane = f->shape[2] * f->shape[3];
    for (int64_t c = 0; c < 3; c++)
        memcpy((float *)o->data + (c * o->shape[1] + first) * plane,
               (const float *)f->data + c * f->shape[1] * plane, (size_t)(f->shape[1] * plane) * sizeof(float));
    return 0;
}

static void test_fixtures(env *e)
{
    td_weights *w = NULL, *w16 = NULL;
    td_vae *vae = load(e, DIR "vae_wan.pth", &w), *vae16 = load(e, DIR "vae_diffusers_bf16.safetensors", &w16);
    td_tensor lat = { 0 }, frames = { 0 }, out = { 0 }, dlat = { 0 }, dframes = { 0 }, denc = { 0 };
    if (!vae || !vae16)
        goto done;
    CHECK(td_vae_spatial_factor(vae) == 8 && td_vae_temporal_factor(vae) == 4 && td_vae_has_encoder(vae),
          "factors %d %d", td_vae_spatial_factor(vae), td_vae_temporal_factor(vae));
    CHECK(td_vae_base_dim(vae) == 4, "base dim %d", td_vae_base_dim(vae));
    CHECK(td_npy_read(&e->ctx, DIR "lat.npy", &lat) == 0, "%s", e->ctx.errmsg);
    CHECK(td_npy_read(&e->ctx, DIR "frames.npy", &frames) == 0, "%s", e->ctx.errmsg);
    if (to_dev(e, &lat, &dlat) < 0 || to_dev(e, &frames, &dframes) < 0)
        goto done;
    if (td_vae_decode_all(vae, &dlat, NULL, &out) == 0)
        check_close(e, &out, DIR "dec_wan.npy", 1e-5, "decode (Wan .pth, f32)");
    else
        CHECK(0, "decode: %s", e->ctx.errmsg);
    td_tensor_free(&out);
    if (td_vae_decode_all(vae16, &dlat, NULL, &out) == 0)
        check_close(e, &out, DIR "dec_bf16.npy", 1e-5, "decode (diffusers, bf16 weights)");
    else
        CHECK(0, "decode bf16: %s", e->ctx.errmsg);
    td_tensor_free(&out);
    if (td_vae_encode(vae, &dframes, &denc) == 0) {
        if (from_dev(e, &denc, &out) == 0)
            check_close(e, &out, DIR "enc_wan.npy", 1e-5, "encode (Wan .pth, f32)");
    } else {
        CHECK(0, "encode: %s", e->ctx.errmsg);
    }
    td_tensor_free(&out);
done:
    td_tensor_free(&lat);
    td_tensor_free(&frames);
    dev_free(e, &dlat);
    dev_free(e, &dframes);
    dev_free(e, &denc);
    td_vae_free(&vae);
    td_vae_free(&vae16);
    td_weights_close(&w);
    td_weights_close(&w16);
}

/* Pushing latent frames in groups (1, 2, 3, 1, 1), each a strided time
 * slice of the clip's latents, equals one-shot decode exactly; the callback sees frames 0 | 1-4 | 5-8 ...; the carried state
 * stops growing after the second latent frame. */
static void test_streaming(env *e, test_rng *rng)
{
    static const int groups[] = { 1, 2, 3, 1, 1 };
    td_weights *w = NULL;
    td_vae *vae = load(e, DIR "vae_wan.pth", &w);
    td_vae_decoder *dec = NULL;
    td_tensor lat = { 0 }, whole = { 0 }, streamed = { 0 };
    frames_log lg = { 0 };
    gather g = { &streamed };
    int64_t T = 8, h = 3, wd = 5, t0 = 0;
    size_t bytes2 = 0;
    int rc;
    if (!vae || random_dev(e, rng, 4, (int64_t[]){ 16, T, h, wd }, 1.5f, &lat) < 0)
        goto done;
    rc = td_vae_decode_all(vae, &lat, NULL, &whole);
    CHECK(rc == 0, "one-shot: %s", e->ctx.errmsg);
    rc = td_vae_decode(vae, &lat, NULL, log_frames, &lg);
    CHECK(rc == 0 && lg.calls == T, "calls %d", lg.calls);
    for (int i = 0; i < lg.calls && i < 16; i++)
        CHECK(lg.first[i] == (i ? 1 + 4 * (i - 1) : 0) && lg.count[i] == (i ? 4 : 1),
              "chunk %d: first %lld count %lld", i, (long long)lg.first[i], (long long)lg.count[i]);
    td_tensor_new(&e->ctx, &streamed, TD_F32, 4, (int64_t[]){ 3, 1 + 4 * (T - 1), 8 * h, 8 * wd });
    rc = td_vae_decoder_open(vae, h, wd, NULL, &dec);
    CHECK(rc == 0, "open: %s", e->ctx.errmsg);
    for (size_t i = 0; rc == 0 && i < sizeof(groups) / sizeof(groups[0]); i++) {
        td_tensor part;
        int64_t n = groups[i];
        rc = td_tensor_slice(&e->ctx, &lat, 1, t0, n, &part);
        if (rc == 0)
            rc = td_vae_decoder_push(dec, &part, gather_frames, &g);
        CHECK(rc == 0, "push %zu: %s", i, e->ctx.errmsg);
        t0 += n;
        if (t0 == 3)
            bytes2 = td_vae_decoder_state_bytes(dec);
    }
    CHECK(bytes2 > 0 && td_vae_decoder_state_bytes(dec) == bytes2, "state %zu bytes after 3 latent frames, %zu after %lld",
          bytes2, td_vae_decoder_state_bytes(dec), (long long)T);
    if (rc == 0 && whole.data)
        CHECK(!memcmp(whole.data, streamed.data, td_nbytes(&whole)), "streamed frames differ from one-shot");
    td_vae_decoder_close(&dec);
    /* the callback stops the decode */
    memset(&lg, 0, sizeof(lg));
    lg.stop_after = 2;
    rc = td_vae_decode(vae, &lat, NULL, log_frames, &lg);
    CHECK(rc == TD_ECANCELLED && lg.calls == 2, "stop: rc %d after %d calls", rc, lg.calls);
    td_ctx_clear(&e->ctx);
done:
    dev_free(e, &lat);
    td_tensor_free(&whole);
    td_tensor_free(&streamed);
    td_vae_free(&vae);
    td_weights_close(&w);
}

static void test_tiling(env *e, test_rng *rng)
{
    td_weights *w = NULL;
    td_vae *vae = load(e, DIR "vae_wan.pth", &w);
    td_tensor lat = { 0 }, ref = { 0 }, tiled = { 0 };
    td_vae_tiling big = { 32, 4 }, small = { 12, 6 };
    int rc;
    if (!vae || random_dev(e, rng, 4, (int64_t[]){ 16, 2, 15, 17 }, 1.5f, &lat) < 0)
        goto done;
    rc = td_vae_decode_all(vae, &lat, NULL, &ref);
    CHECK(rc == 0, "untiled: %s", e->ctx.errmsg);
    rc = td_vae_decode_all(vae, &lat, &big, &tiled);
    CHECK(rc == 0 && !memcmp(ref.data, tiled.data, td_nbytes(&ref)), "one tile covering all differs from untiled");
    td_tensor_free(&tiled);
    rc = td_vae_decode_all(vae, &lat, &small, &tiled);
    CHECK(rc == 0, "tiled: %s", e->ctx.errmsg);
    if (rc == 0) {
        double err = rel_l2_ff(tiled.data, ref.data, (size_t)td_numel(&ref));
        printf("tiled (12, overlap 6) vs untiled: rel L2 %.3g (bound %.2f)\n", err, TILE_BOUND);
        CHECK(err < TILE_BOUND && err > 0, "tiled rel L2 %.3g", err);
    }
    td_tensor_free(&tiled);
    rc = td_vae_decode_all(vae, &lat, &(td_vae_tiling){ 4, 4 }, &tiled);
    CHECK(rc == TD_EINVAL && strstr(e->ctx.errmsg, "overlap"), "overlap = tile: rc %d %s", rc, e->ctx.errmsg);
    td_ctx_clear(&e->ctx);
done:
    dev_free(e, &lat);
    td_tensor_free(&ref);
    td_tensor_free(&tiled);
    td_vae_free(&vae);
    td_weights_close(&w);
}

static void test_errors(env *e, test_rng *rng)
{
    td_weights *w = NULL;
    td_vae *vae = NULL;
    td_tensor x = { 0 }, out = { 0 };
    int rc;

    CHECK(td_weights_open(&e->ctx, DIR "vae_dec_missing.safetensors", &w) == 0, "%s", e->ctx.errmsg);
    rc = td_vae_load(e->be, w, &vae);
    CHECK(rc == TD_ENOTFOUND && !vae && strstr(e->ctx.errmsg, "vae_dec_missing.safetensors") &&
          strstr(e->ctx.errmsg, "decoder.up_blocks.1.resnets.0.conv1.weight"), "missing: rc %d %s", rc, e->ctx.errmsg);
    td_ctx_clear(&e->ctx);
    td_weights_close(&w);

    CHECK(td_weights_open(&e->ctx, DIR "vae_dec_badshape.safetensors", &w) == 0, "%s", e->ctx.errmsg);
    rc = td_vae_load(e->be, w, &vae);
    CHECK(rc == TD_ESHAPE && strstr(e->ctx.errmsg, "decoder.mid_block.resnets.1.norm2.gamma"),
          "bad shape: rc %d %s", rc, e->ctx.errmsg);
    td_ctx_clear(&e->ctx);
    td_weights_close(&w);

    /* a file that is no VAE at all */
    CHECK(td_weights_open(&e->ctx, TD_ROOT "/tests/data/weights/state_dict.pth", &w) == 0, "%s", e->ctx.errmsg);
    rc = td_vae_load(e->be, w, &vae);
    CHECK(rc == TD_ENOTFOUND && strstr(e->ctx.errmsg, "decoder.conv1.weight"), "not a vae: rc %d %s", rc,
          e->ctx.errmsg);
    td_ctx_clear(&e->ctx);
    td_weights_close(&w);

    vae = load(e, DIR "vae_wan.pth", &w);
    if (vae && random_dev(e, rng, 4, (int64_t[]){ 8, 2, 3, 3 }, 1.0f, &x) == 0) {
        rc = td_vae_decode_all(vae, &x, NULL, &out);
        CHECK(rc == TD_ESHAPE && strstr(e->ctx.errmsg, "[16, T"), "latent channels: rc %d %s", rc, e->ctx.errmsg);
        td_ctx_clear(&e->ctx);
        dev_free(e, &x);
    }
    if (vae && random_dev(e, rng, 4, (int64_t[]){ 3, 4, 16, 16 }, 1.0f, &x) == 0) {
        rc = td_vae_encode(vae, &x, &out);
        CHECK(rc == TD_ESHAPE && strstr(e->ctx.errmsg, "1 + 4*k"), "frame count: rc %d %s", rc, e->ctx.errmsg);
        td_ctx_clear(&e->ctx);
        dev_free(e, &x);
    }
    if (vae && random_dev(e, rng, 4, (int64_t[]){ 3, 1, 12, 16 }, 1.0f, &x) == 0) {
        rc = td_vae_encode(vae, &x, &out);
        CHECK(rc == TD_ESHAPE && strstr(e->ctx.errmsg, "multiples of 8"), "frame size: rc %d %s", rc, e->ctx.errmsg);
        td_ctx_clear(&e->ctx);
        dev_free(e, &x);
    }
    td_vae_free(&vae);
    td_weights_close(&w);
}

int main(void)
{
    test_rng rng = test_rng_seeded();
    env e;
    td_ctx_init(&e.ctx);
    if (td_pool_create(&e.ctx, 2, &e.ctx.pool) < 0 || td_backend_cpu_create(&e.ctx, 0, &e.be) < 0) {
        fprintf(stderr, "setup: %s\n", e.ctx.errmsg);
        return 1;
    }
    test_fixtures(&e);
    test_streaming(&e, &rng);
    test_tiling(&e, &rng);
    test_errors(&e, &rng);
    td_backend_destroy(&e.be);
    td_pool_destroy(&e.ctx.pool);
    return check_summary();
}
