/*
 * turbodiff vae-decode / vae-encode: drive the Wan VAE on .npy arrays.
 *
 *   latents  [16, T, h, w] (or [1, 16, T, h, w]), normalised as Wan does;
 *   frames   [3, F, H, W] (or [1, 3, F, H, W]), RGB in [-1, 1],
 *            F = 1 + 4 (T - 1), H = 8 h, W = 8 w.
 *
 * vae-decode streams: with a .y4m output every chunk of frames is written as
 * soon as it is decoded. The .y4m is 8-bit 4:2:0 (C420jpeg: chroma sited
 * between the 2x2 pixels it averages), BT.601 limited range (Y 16-235,
 * Cb/Cr 16-240), 16 fps; H and W are multiples of 8 so chroma halves exactly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "y4m.h"
#include "core/pool.h"
#include "io/npy.h"
#include "io/weights.h"
#include "vae/vae.h"

static void usage(FILE *f, const char *cmd)
{
    if (!strcmp(cmd, "vae-decode"))
        fprintf(f, "usage: turbodiff vae-decode --vae FILE --latents L.npy --out FRAMES.npy|FRAMES.y4m\n"
                   "                            [--tile N --overlap N] [--threads N]\n"
                   "  L.npy: [16, T, h, w] normalised latents (a leading batch dim of 1 is allowed)\n"
                   "  .npy out: [3, 1+4(T-1), 8h, 8w] float32 in [-1, 1]\n"
                   "  .y4m out: 8-bit 4:2:0 (C420jpeg), BT.601 limited range, 16 fps, written per chunk\n"
                   "  --tile N: decode in N x N latent tiles overlapping by --overlap (default N/4)\n");
    else
        fprintf(f, "usage: turbodiff vae-encode --vae FILE --frames F.npy --out L.npy [--threads N]\n"
                   "  F.npy: [3, 1+4k, H, W] float32 in [-1, 1], H and W multiples of 8\n"
                   "  L.npy: [16, 1+k, H/8, W/8], the normalised posterior mean\n");
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Drop a leading batch dim of 1. */
static int unbatch(td_ctx *ctx, td_tensor *t, const char *what)
{
    char s[96];
    if (t->ndim == 5 && t->shape[0] == 1) {
        memmove(t->shape, t->shape + 1, 4 * sizeof(t->shape[0]));
        memmove(t->stride, t->stride + 1, 4 * sizeof(t->stride[0]));
        t->ndim = 4;
    }
    if (t->ndim != 4 || t->dtype != TD_F32)
        return td_fail(ctx, TD_ESHAPE, "%s %s must be float [C, T, H, W] (or with a batch dim of 1)",
                       what, td_shape_str(t, s, sizeof(s)));
    return 0;
}

/* The host array into a new backend tensor of be's activation dtype. */
static int to_backend(td_backend *be, const td_tensor *host, td_tensor *dev)
{
    int rc = be->ops->tensor_new(be, dev, be->act, host->ndim, host->shape);
    if (rc == 0 && (rc = be->ops->write(be, dev, host)) < 0)
        be->ops->tensor_free(be, dev);
    return rc;
}

/* frames (host) -> latents: encoded on the backend, read back as f32. */
static int encode(td_vae *vae, const td_tensor *frames, td_tensor *out)
{
    td_backend *be = td_vae_backend(vae);
    td_tensor x = { 0 }, lat = { 0 };
    int rc = to_backend(be, frames, &x);
    if (rc == 0)
        rc = td_vae_encode(vae, &x, &lat);
    if (rc == 0)
        rc = td_tensor_new(be->ctx, out, TD_F32, lat.ndim, lat.shape);
    if (rc == 0)
        rc = be->ops->read(be, &lat, out);
    be->ops->tensor_free(be, &x);
    be->ops->tensor_free(be, &lat);
    return rc;
}

static int run(const char *cmd, int argc, char **argv)
{
    int decode = !strcmp(cmd, "vae-decode");
    const char *vae_path = NULL, *in_path = NULL, *out_path = NULL;
    int threads = 0, tile = 0, overlap = -1, rc;
    td_vae_tiling tiling = { 0, 0 };
    td_ctx ctx;
    td_backend *be = NULL;
    td_weights *w = NULL;
    td_vae *vae = NULL;
    td_tensor in = { 0 }, lat = { 0 }, out = { 0 };

    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout, cmd);
            return 0;
        }
        if (!val) {
            fprintf(stderr, "turbodiff %s: '%s' needs a value or is unknown\n", cmd, a);
            usage(stderr, cmd);
            return 2;
        }
        if (!strcmp(a, "--vae"))
            vae_path = val;
        else if (!strcmp(a, decode ? "--latents" : "--frames"))
            in_path = val;
        else if (!strcmp(a, "--out"))
            out_path = val;
        else if (!strcmp(a, "--threads"))
            threads = atoi(val);
        else if (decode && !strcmp(a, "--tile"))
            tile = atoi(val);
        else if (decode && !strcmp(a, "--overlap"))
            overlap = atoi(val);
        else {
            fprintf(stderr, "turbodiff %s: unknown option '%s'\n", cmd, a);
            usage(stderr, cmd);
            return 2;
        }
    }
    if (!vae_path || !in_path || !out_path) {
        usage(stderr, cmd);
        return 2;
    }
    if (tile < 0 || (tile > 0 && (overlap < -1 || overlap >= tile))) {
        fprintf(stderr, "turbodiff %s: --tile %d --overlap %d: need tile >= 0 and 0 <= overlap < tile\n",
                cmd, tile, overlap);
        return 2;
    }
    tiling.tile = tile;
    tiling.overlap = overlap < 0 ? tile / 4 : overlap;

    td_ctx_init(&ctx);
    rc = td_pool_create(&ctx, threads, &ctx.pool);
    if (rc == 0)
        rc = td_backend_cpu_create(&ctx, 0, &be);
    if (rc == 0)
        rc = td_weights_open(&ctx, vae_path, &w);
    if (rc == 0)
        rc = td_vae_load(be, w, &vae);
    if (rc == 0)
        rc = td_npy_read(&ctx, in_path, &in);
    if (rc == 0)
        rc = unbatch(&ctx, &in, decode ? "latents" : "frames");
    if (rc == 0 && decode)
        rc = to_backend(be, &in, &lat);
    if (rc == 0 && decode && ends_with(out_path, ".y4m")) {
        y4m_out o = { fopen(out_path, "wb"), NULL, 0 };
        int64_t H = in.shape[2] * td_vae_spatial_factor(vae), W = in.shape[3] * td_vae_spatial_factor(vae);
        if (!o.f)
            rc = td_fail(&ctx, TD_EIO, "cannot create %s", out_path);
        else if (!(o.buf = malloc((size_t)(H * W * 3 / 2))))
            rc = td_fail(&ctx, TD_ENOMEM, "y4m frame buffer");
        else if (y4m_header(o.f, W, H) < 0)
            rc = td_fail(&ctx, TD_EIO, "cannot write %s", out_path);
        if (rc == 0)
            rc = td_vae_decode(vae, &lat, tile ? &tiling : NULL, y4m_write_frames, &o);
        if (o.failed) {
            td_ctx_clear(&ctx);
            rc = td_fail(&ctx, TD_EIO, "cannot write %s", out_path);
        }
        free(o.buf);
        if (o.f && fclose(o.f) != 0 && rc == 0)
            rc = td_fail(&ctx, TD_EIO, "cannot write %s", out_path);
    } else if (rc == 0) {
        rc = decode ? td_vae_decode_all(vae, &lat, tile ? &tiling : NULL, &out) : encode(vae, &in, &out);
        if (rc == 0)
            rc = td_npy_write(&ctx, out_path, &out);
    }
    if (rc < 0)
        fprintf(stderr, "turbodiff %s: %s\n", cmd, ctx.errmsg);
    td_tensor_free(&in);
    td_tensor_free(&out);
    if (be)
        be->ops->tensor_free(be, &lat);
    td_vae_free(&vae);
    td_weights_close(&w);
    td_backend_destroy(&be);
    td_pool_destroy(&ctx.pool);
    return rc < 0 ? 1 : 0;
}

int cmd_vae_decode(int argc, char **argv) { return run("vae-decode", argc, argv); }
int cmd_vae_encode(int argc, char **argv) { return run("vae-encode", argc, argv); }
