/*
 * Wan2.2 VAE against the committed fixtures (tests/data/vae22, written by
 * tests/parity/gen_vae22_fixtures.py from diffusers' AutoencoderKLWan in
 * Wan2.2's configuration, saved in Wan's Wan2.2_VAE.pth names): the model
 * reads as z 48, 4x16x16; decode and encode match diffusers' float64
 * reference; the fenced backend (memory host code cannot touch outside an
 * op) gives the CPU backend's results bit for bit; streaming pushes in any
 * grouping equal one-shot decode bit for bit with 1, then 4 frames per
 * latent frame and constant carried state; wrong latent widths and frame
 * sizes fail naming the 2.2 shapes.
 */
#include <string.h>

#include "check.h"
#include "core/pool.h"
#include "fenced_backend.h"
#include "io/npy.h"
#include "io/weights.h"
#include "vae/vae.h"

#define DIR TD_ROOT "/tests/data/vae22/"

typedef struct env {
    td_ctx ctx;
    td_backend *be;
} env;

/* The host array into a new backend tensor. */
static int to_dev(env *e, const td_tensor *host, td_tensor *dev)
{
    int rc = e->be->ops->tensor_new(e->be, dev, e->be->act, host->ndim, host->shape);
    if (rc == 0 && (rc = e->be->ops->write(e->be, dev, host)) < 0)
        e->be->ops->tensor_free(e->be, dev);
    CHECK(rc == 0, "to the backend: %s", e->ctx.errmsg);
    return rc;
}

static int from_dev(env *e, const td_tensor *dev, td_tensor *host)
{
    int rc = td_tensor_new(&e->ctx, host, TD_F32, dev->ndim, dev->shape);
    if (rc == 0 && (rc = e->be->ops->read(e->be, dev, host)) < 0)
        td_tensor_free(host);
    CHECK(rc == 0, "from the backend: %s", e->ctx.errmsg);
    return rc;
}

static void check_close(env *e, const td_tensor *ours, const char *ref_path, const char *what)
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
            CHECK(err < 1e-5, "%s: rel L2 %.3g", what, err);
        }
    }
    td_tensor_free(&ref);
}

/* Decode lat.npy and encode frames.npy on e's backend into host *dec and
 * *enc, each checked against diffusers' reference. */
static void run_fixtures(env *e, const char *label, td_tensor *dec, td_tensor *enc)
{
    td_weights *w = NULL;
    td_vae *vae = NULL;
    td_tensor lat = { 0 }, frames = { 0 }, dlat = { 0 }, dframes = { 0 }, denc = { 0 };
    char what[96];
    int rc = td_weights_open(&e->ctx, DIR "vae22_wan.pth", &w);
    if (rc == 0)
        rc = td_vae_load(e->be, w, &vae);
    CHECK(rc == 0, "%s: load: %s", label, e->ctx.errmsg);
    if (rc < 0)
        goto done;
    CHECK(td_vae_z_dim(vae) == 48 && td_vae_spatial_factor(vae) == 16 && td_vae_temporal_factor(vae) == 4 &&
          td_vae_has_encoder(vae), "%s: z %d, factors %d %d", label, td_vae_z_dim(vae),
          td_vae_spatial_factor(vae), td_vae_temporal_factor(vae));
    CHECK(td_npy_read(&e->ctx, DIR "lat.npy", &lat) == 0, "%s", e->ctx.errmsg);
    CHECK(td_npy_read(&e->ctx, DIR "frames.npy", &frames) == 0, "%s", e->ctx.errmsg);
    if (!lat.data || !frames.data || to_dev(e, &lat, &dlat) < 0 || to_dev(e, &frames, &dframes) < 0)
        goto done;
    rc = td_vae_decode_all(vae, &dlat, NULL, dec);
    CHECK(rc == 0, "%s: decode: %s", label, e->ctx.errmsg);
    snprintf(what, sizeof(what), "%s decode", label);
    if (rc == 0)
        check_close(e, dec, DIR "dec.npy", what);
    rc = td_vae_encode(vae, &dframes, &denc);
    CHECK(rc == 0, "%s: encode: %s", label, e->ctx.errmsg);
    snprintf(what, sizeof(what), "%s encode", label);
    if (rc == 0 && from_dev(e, &denc, enc) == 0)
        check_close(e, enc, DIR "enc.npy", what);
done:
    td_tensor_free(&lat);
    td_tensor_free(&frames);
    e->be->ops->tensor_free(e->be, &dlat);
    e->be->ops->tensor_free(e->be, &dframes);
    e->be->ops->tensor_free(e->be, &denc);
    td_vae_free(&vae);
    td_weights_close(&w);
}

static int same_bits(const td_tensor *a, const td_tensor *b)
{
    return a->data && b->data && td_numel(a) == td_numel(b) && !memcmp(a->data, b->data, td_nbytes(a));
}

/* The CPU and the fenced backend: both match the reference, and each
 * other bit for bit. */
static void test_fixtures_on_backends(env *cpu, env *fenced)
{
    td_tensor dec[2] = { { 0 } }, enc[2] = { { 0 } };
    run_fixtures(cpu, "cpu", &dec[0], &enc[0]);
    run_fixtures(fenced, "fenced", &dec[1], &enc[1]);
    CHECK(same_bits(&dec[0], &dec[1]), "fenced decode differs from the CPU backend's");
    CHECK(same_bits(&enc[0], &enc[1]), "fenced encode differs from the CPU backend's");
    for (int i = 0; i < 2; i++) {
        td_tensor_free(&dec[i]);
        td_tensor_free(&enc[i]);
    }
}

typedef struct gather {
    td_tensor *out;
    int calls;
    int64_t first[8], count[8];
} gather;

static int gather_frames(void *opaque, int64_t first, const td_tensor *f)
{
    gather *g = opaque;
    td_tensor *o = g->out;
    int64_t plane = f->shape[2] * f->shape[3];
    if (g->calls < 8) {
        g->first[g->calls] = first;
        g->count[g->calls] = f->shape[1];
    }
    g->calls++;
    for (int64_t c = 0; c < 3; c++)
        memcpy((float *)o->data + (c * o->shape[1] + first) * plane,
               (const float *)f->data + c * f->shape[1] * plane, (size_t)(f->shape[1] * plane) * sizeof(float));
    return 0;
}

/* Latent frames pushed in groups (1, 2, 2, 1), each a strided time slice,
 * give one-shot decode's frames exactly, 1 then 4 per latent frame; the
 * carried state stops growing after the third latent frame. */
static void test_streaming(env *e, test_rng *rng)
{
    static const int groups[] = { 1, 2, 2, 1 };
    td_weights *w = NULL;
    td_vae *vae = NULL;
    td_vae_decoder *dec = NULL;
    td_tensor host = { 0 }, lat = { 0 }, whole = { 0 }, streamed = { 0 };
    gather g = { &streamed, 0, { 0 }, { 0 } };
    int64_t T = 6, h = 2, wd = 3, t0 = 0;
    size_t bytes3 = 0;
    int rc = td_weights_open(&e->ctx, DIR "vae22_wan.pth", &w);
    if (rc == 0)
        rc = td_vae_load(e->be, w, &vae);
    if (rc == 0)
        rc = td_tensor_new(&e->ctx, &host, TD_F32, 4, (int64_t[]){ 48, T, h, wd });
    CHECK(rc == 0, "setup: %s", e->ctx.errmsg);
    if (rc < 0)
        goto done;
    test_fill(rng, host.data, (size_t)td_numel(&host), 1.5f);
    if (to_dev(e, &host, &lat) < 0)
        goto done;
    rc = td_vae_decode_all(vae, &lat, NULL, &whole);
    CHECK(rc == 0, "one-shot: %s", e->ctx.errmsg);
    td_tensor_new(&e->ctx, &streamed, TD_F32, 4, (int64_t[]){ 3, 1 + 4 * (T - 1), 16 * h, 16 * wd });
    rc = td_vae_decoder_open(vae, h, wd, NULL, &dec);
    CHECK(rc == 0, "open: %s", e->ctx.errmsg);
    for (size_t i = 0; rc == 0 && i < sizeof(groups) / sizeof(groups[0]); i++) {
        td_tensor part;
        rc = td_tensor_slice(&e->ctx, &lat, 1, t0, groups[i], &part);
        if (rc == 0)
            rc = td_vae_decoder_push(dec, &part, gather_frames, &g);
        CHECK(rc == 0, "push %zu: %s", i, e->ctx.errmsg);
        t0 += groups[i];
        if (t0 == 3)
            bytes3 = td_vae_decoder_state_bytes(dec);
    }
    CHECK(g.calls == T, "calls %d", g.calls);
    for (int i = 0; i < g.calls && i < 8; i++)
        CHECK(g.first[i] == (i ? 1 + 4 * (i - 1) : 0) && g.count[i] == (i ? 4 : 1),
              "chunk %d: first %lld count %lld", i, (long long)g.first[i], (long long)g.count[i]);
    CHECK(bytes3 > 0 && td_vae_decoder_state_bytes(dec) == bytes3, "state %zu bytes after 3 latent frames, %zu after %lld",
          bytes3, td_vae_decoder_state_bytes(dec), (long long)T);
    CHECK(rc == 0 && same_bits(&whole, &streamed), "streamed frames differ from one-shot");
done:
    td_vae_decoder_close(&dec);
    td_tensor_free(&host);
    e->be->ops->tensor_free(e->be, &lat);
    td_tensor_free(&whole);
    td_tensor_free(&streamed);
    td_vae_free(&vae);
    td_weights_close(&w);
}

static void test_errors(env *e)
{
    td_weights *w = NULL;
    td_vae *vae = NULL;
    td_tensor host = { 0 }, x = { 0 }, out = { 0 };
    int rc = td_weights_open(&e->ctx, DIR "vae22_wan.pth", &w);
    if (rc == 0)
        rc = td_vae_load(e->be, w, &vae);
    CHECK(rc == 0, "load: %s", e->ctx.errmsg);
    if (rc == 0 && td_tensor_new(&e->ctx, &host, TD_F32, 4, (int64_t[]){ 16, 2, 3, 3 }) == 0 &&
        to_dev(e, &host, &x) == 0) {
        rc = td_vae_decode_all(vae, &x, NULL, &out);
        CHECK(rc == TD_ESHAPE && strstr(e->ctx.errmsg, "[48, T"), "latent channels: rc %d %s", rc, e->ctx.errmsg);
        td_ctx_clear(&e->ctx);
    }
    e->be->ops->tensor_free(e->be, &x);
    td_tensor_free(&host);
    /* 24x32 frames: multiples of the nets' 8 but not of the patched 16 */
    if (vae && td_tensor_new(&e->ctx, &host, TD_F32, 4, (int64_t[]){ 3, 1, 24, 32 }) == 0 &&
        to_dev(e, &host, &x) == 0) {
        rc = td_vae_encode(vae, &x, &out);
        CHECK(rc == TD_ESHAPE && strstr(e->ctx.errmsg, "multiples of 16"), "frame size: rc %d %s", rc, e->ctx.errmsg);
        td_ctx_clear(&e->ctx);
    }
    e->be->ops->tensor_free(e->be, &x);
    td_tensor_free(&host);
    td_vae_free(&vae);
    td_weights_close(&w);
}

int main(void)
{
    test_rng rng = test_rng_seeded();
    env cpu, fenced;
    td_ctx_init(&cpu.ctx);
    td_ctx_init(&fenced.ctx);
    if (td_pool_create(&cpu.ctx, 2, &cpu.ctx.pool) < 0 || td_backend_cpu_create(&cpu.ctx, 0, &cpu.be) < 0 ||
        td_pool_create(&fenced.ctx, 2, &fenced.ctx.pool) < 0 ||
        td_backend_fenced_f32_create(&fenced.ctx, 0, &fenced.be) < 0) {
        fprintf(stderr, "setup: %s %s\n", cpu.ctx.errmsg, fenced.ctx.errmsg);
        return 1;
    }
    test_fixtures_on_backends(&cpu, &fenced);
    test_streaming(&cpu, &rng);
    test_errors(&cpu);
    td_backend_destroy(&cpu.be);
    td_backend_destroy(&fenced.be);
    td_pool_destroy(&cpu.ctx.pool);
    td_pool_destroy(&fenced.ctx.pool);
    return check_summary();
}
