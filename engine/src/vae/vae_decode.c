/*
 * Streaming decode: one latent frame per decoder chunk, as Wan does (the
 * first becomes 1 frame, each further one 4). The state between chunks is
 * the causal caches only, so memory is bounded whatever the clip length.
 *
 * Tiling: the latent plane is cut into overlapping tiles, each with its own
 * caches; per chunk every tile is decoded and the tiles are blended with
 * weights that ramp linearly across each overlap, normalised by their sum,
 * then clamped. Tiles bound the activation memory of a chunk (not the
 * caches, which together cover the frame plus the overlaps).
 */
#include <stdlib.h>
#include <string.h>

#include "vae_internal.h"

typedef struct tile {
    int64_t y0, x0, th, tw;   /* latent rectangle */
    float *wy, *wx;           /* blend weights over its pixel rows / cols */
    vae_state st;
} tile;

struct td_vae_decoder {
    td_vae *vae;
    int64_t h, w;             /* latent size */
    int ntiles;
    tile *tiles;
    float *wsum;              /* [H, W] sum of tile weights */
    int64_t next_frame;
};

/* Tile starts along an axis of n latent pixels; the last tile ends at n. */
static int axis_starts(int64_t n, int64_t ts, int64_t ov, int64_t *starts)
{
    int k = 0;
    if (ts <= 0 || ts >= n) {
        starts[0] = 0;
        return 1;
    }
    for (int64_t s = 0;; s += ts - ov) {
        if (s + ts >= n) {
            starts[k++] = n - ts;
            return k;
        }
        starts[k++] = s;
    }
}

/* Linear ramps across the overlaps with the neighbouring tiles (pixels). */
static void axis_weights(float *wt, int64_t a, int64_t len, int64_t prev_end, int64_t next_start)
{
    int64_t ovl = prev_end - a, ovr = a + len - next_start;
    for (int64_t p = 0; p < len; p++) {
        float v = 1.0f;
        if (ovl > 0 && p < ovl)
            v *= (float)((p + 0.5) / ovl);
        if (ovr > 0 && p >= len - ovr)
            v *= (float)((len - p - 0.5) / ovr);
        wt[p] = v;
    }
}

void td_vae_decoder_close(td_vae_decoder **dec)
{
    if (!dec || !*dec)
        return;
    for (int i = 0; (*dec)->tiles && i < (*dec)->ntiles; i++) {
        vae_state_free(&(*dec)->tiles[i].st);
        free((*dec)->tiles[i].wy);
        free((*dec)->tiles[i].wx);
    }
    free((*dec)->tiles);
    free((*dec)->wsum);
    free(*dec);
    *dec = NULL;
}

size_t td_vae_decoder_state_bytes(const td_vae_decoder *d)
{
    size_t n = 0;
    for (int i = 0; i < d->ntiles; i++)
        for (int j = 0; j < d->tiles[i].st.nslots; j++)
            if (d->tiles[i].st.slots[j].frames.data)
                n += td_nbytes(&d->tiles[i].st.slots[j].frames);
    return n;
}

static int setup_tiles(td_vae_decoder *d, const td_vae_tiling *tl)
{
    td_ctx *ctx = d->vae->ctx;
    int64_t sf = d->vae->dec.sfactor, ts = tl ? tl->tile : 0, ov = tl ? tl->overlap : 0;
    int64_t H = d->h * sf, W = d->w * sf, *ys, *xs;
    int ny, nx, rc = 0;

    if (ts > 0 && (ov < 0 || ov >= ts))
        return td_fail(ctx, TD_EINVAL, "vae: tile overlap %lld must be in [0, tile %lld)",
                       (long long)ov, (long long)ts);
    ys = malloc((size_t)(d->h + 1) * sizeof(*ys));
    xs = malloc((size_t)(d->w + 1) * sizeof(*xs));
    if (!ys || !xs) {
        free(ys);
        free(xs);
        return td_fail(ctx, TD_ENOMEM, "vae: tiles");
    }
    ny = axis_starts(d->h, ts, ov, ys);
    nx = axis_starts(d->w, ts, ov, xs);
    d->tiles = calloc((size_t)(ny * nx), sizeof(*d->tiles));
    d->wsum = ny * nx > 1 ? calloc((size_t)(H * W), sizeof(float)) : NULL;
    if (!d->tiles || (ny * nx > 1 && !d->wsum))
        rc = td_fail(ctx, TD_ENOMEM, "vae: tiles");
    for (int i = 0; rc == 0 && i < ny; i++) {
        for (int j = 0; rc == 0 && j < nx; j++) {
            tile *t = &d->tiles[d->ntiles++];
            t->y0 = ys[i];
            t->x0 = xs[j];
            t->th = ny > 1 ? ts : d->h;
            t->tw = nx > 1 ? ts : d->w;
            t->wy = malloc((size_t)(t->th * sf) * sizeof(float));
            t->wx = malloc((size_t)(t->tw * sf) * sizeof(float));
            rc = vae_state_init(ctx, &t->st, d->vae->dec.nslots);
            if (rc == 0 && (!t->wy || !t->wx))
                rc = td_fail(ctx, TD_ENOMEM, "vae: tile weights");
            if (rc < 0)
                break;
            axis_weights(t->wy, t->y0 * sf, t->th * sf, i > 0 ? (ys[i - 1] + ts) * sf : 0,
                         i + 1 < ny ? ys[i + 1] * sf : H);
            axis_weights(t->wx, t->x0 * sf, t->tw * sf, j > 0 ? (xs[j - 1] + ts) * sf : 0,
                         j + 1 < nx ? xs[j + 1] * sf : W);
            for (int64_t y = 0; d->wsum && y < t->th * sf; y++)
                for (int64_t x = 0; x < t->tw * sf; x++)
                    d->wsum[(t->y0 * sf + y) * W + t->x0 * sf + x] += t->wy[y] * t->wx[x];
        }
    }
    free(ys);
    free(xs);
    return rc;
}

int td_vae_decoder_open(td_vae *vae, int64_t h, int64_t w, const td_vae_tiling *tiling,
                        td_vae_decoder **out)
{
    td_vae_decoder *d;
    int rc;
    *out = NULL;
    if (h < 1 || w < 1)
        return td_fail(vae->ctx, TD_EINVAL, "vae: latent size %lldx%lld must be at least 1x1",
                       (long long)h, (long long)w);
    d = calloc(1, sizeof(*d));
    if (!d)
        return td_fail(vae->ctx, TD_ENOMEM, "vae: decoder");
    d->vae = vae;
    d->h = h;
    d->w = w;
    rc = setup_tiles(d, tiling);
    if (rc < 0) {
        td_vae_decoder_close(&d);
        return rc;
    }
    *out = d;
    return 0;
}

/* One tile's latent frame (already denormalised) through post_quant and the
 * decoder: z [16, 1, h, w] whole frame -> *y [3, n, th*8, tw*8]. */
static int decode_tile(td_vae_decoder *d, tile *t, const td_tensor *z, td_tensor *y)
{
    static const td_conv3d_params p1 = { { 1, 1, 1 }, 0, 0, 0, 0 };
    td_vae *vae = d->vae;
    td_tensor crop = { 0 }, pq = { 0 };
    int rc = 0;
    if (t->th == d->h && t->tw == d->w) {
        crop = *z;
        crop.owns = 0;
    } else {
        rc = td_tensor_new(vae->ctx, &crop, TD_F32, 4, (int64_t[]){ TD_VAE_Z, 1, t->th, t->tw });
        for (int64_t c = 0; rc == 0 && c < TD_VAE_Z; c++)
            for (int64_t r = 0; r < t->th; r++)
                memcpy((float *)crop.data + (c * t->th + r) * t->tw,
                       (const float *)z->data + (c * d->h + t->y0 + r) * d->w + t->x0,
                       (size_t)t->tw * sizeof(float));
    }
    if (rc == 0)
        rc = vae_conv_new(vae, &crop, &vae->post_quant, &p1, &pq);
    td_tensor_free(&crop);
    if (rc == 0)
        rc = vae_net_chunk(vae, &vae->dec, &t->st, &pq, y);
    td_tensor_free(&pq);
    return rc;
}

static void clamp1(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] < -1.0f ? -1.0f : x[i] > 1.0f ? 1.0f : x[i];
}

/* Decode latent frame z [16, 1, h, w] (denormalised) into *out [3, n, H, W]. */
static int decode_chunk(td_vae_decoder *d, const td_tensor *z, td_tensor *out)
{
    td_vae *vae = d->vae;
    int64_t sf = vae->dec.sfactor, H = d->h * sf, W = d->w * sf, nf, co;
    td_tensor ty = { 0 };
    int rc;
    if (d->ntiles == 1) {
        TD_TRY(decode_tile(d, &d->tiles[0], z, out));
        clamp1(out->data, td_numel(out));
        return 0;
    }
    for (int i = 0; i < d->ntiles; i++) {
        tile *t = &d->tiles[i];
        int64_t th = t->th * sf, tw = t->tw * sf;
        rc = decode_tile(d, t, z, &ty);
        if (rc < 0) {
            td_tensor_free(out);
            return rc;
        }
        co = ty.shape[0];
        nf = ty.shape[1];
        if (i == 0) {
            rc = td_tensor_new(vae->ctx, out, TD_F32, 4, (int64_t[]){ co, nf, H, W });
            if (rc < 0) {
                td_tensor_free(&ty);
                return rc;
            }
        }
        for (int64_t c = 0; c < co * nf; c++)
            for (int64_t y = 0; y < th; y++) {
                float *dst = (float *)out->data + (c * H + t->y0 * sf + y) * W + t->x0 * sf;
                const float *src = (const float *)ty.data + (c * th + y) * tw;
                for (int64_t x = 0; x < tw; x++)
                    dst[x] += src[x] * t->wy[y] * t->wx[x];
            }
        td_tensor_free(&ty);
    }
    for (int64_t c = 0; c < out->shape[0] * out->shape[1]; c++) {
        float *o = (float *)out->data + c * H * W;
        for (int64_t i = 0; i < H * W; i++)
            o[i] /= d->wsum[i];
    }
    clamp1(out->data, td_numel(out));
    return 0;
}

int td_vae_decoder_push(td_vae_decoder *d, const td_tensor *lat, td_vae_frames_fn fn, void *opaque)
{
    td_vae *vae = d->vae;
    int64_t plane = d->h * d->w;
    td_tensor z = { 0 }, frames = { 0 };
    char s[96];
    int rc;

    if (!lat || lat->dtype != TD_F32 || lat->ndim != 4 || !td_is_contiguous(lat) ||
        lat->shape[0] != TD_VAE_Z || lat->shape[1] < 1 || lat->shape[2] != d->h || lat->shape[3] != d->w)
        return td_fail(vae->ctx, TD_ESHAPE, "vae: latents %s must be contiguous f32 [%d, T>=1, %lld, %lld]",
                       lat ? td_shape_str(lat, s, sizeof(s)) : "(none)", TD_VAE_Z, (long long)d->h,
                       (long long)d->w);
    TD_TRY(td_tensor_new(vae->ctx, &z, TD_F32, 4, (int64_t[]){ TD_VAE_Z, 1, d->h, d->w }));
    rc = 0;
    for (int64_t t = 0; rc == 0 && t < lat->shape[1]; t++) {
        for (int64_t c = 0; c < TD_VAE_Z; c++) {
            const float *src = (const float *)lat->data + (c * lat->shape[1] + t) * plane;
            float *dst = (float *)z.data + c * plane;
            for (int64_t i = 0; i < plane; i++)
                dst[i] = src[i] * vae->std[c] + vae->mean[c];
        }
        rc = decode_chunk(d, &z, &frames);
        if (rc == 0 && fn && fn(opaque, d->next_frame, &frames))
            rc = td_fail(vae->ctx, TD_ECANCELLED, "vae: decoding stopped by the frame callback at frame %lld",
                         (long long)d->next_frame);
        if (rc == 0)
            d->next_frame += frames.shape[1];
        td_tensor_free(&frames);
    }
    td_tensor_free(&z);
    return rc;
}

int td_vae_decode(td_vae *vae, const td_tensor *latents, const td_vae_tiling *tiling,
                  td_vae_frames_fn fn, void *opaque)
{
    td_vae_decoder *d;
    char s[96];
    int rc;
    if (!latents || latents->ndim != 4 || latents->shape[0] != TD_VAE_Z)
        return td_fail(vae->ctx, TD_ESHAPE, "vae: latents %s must be [%d, T, h, w]",
                       latents ? td_shape_str(latents, s, sizeof(s)) : "(none)", TD_VAE_Z);
    TD_TRY(td_vae_decoder_open(vae, latents->shape[2], latents->shape[3], tiling, &d));
    rc = td_vae_decoder_push(d, latents, fn, opaque);
    td_vae_decoder_close(&d);
    return rc;
}

typedef struct collect {
    td_tensor *out;
} collect;

static int collect_frames(void *opaque, int64_t first, const td_tensor *f)
{
    td_tensor *out = ((collect *)opaque)->out;
    int64_t plane = f->shape[2] * f->shape[3];
    for (int64_t c = 0; c < f->shape[0]; c++)
        memcpy((float *)out->data + (c * out->shape[1] + first) * plane,
               (const float *)f->data + c * f->shape[1] * plane,
               (size_t)(f->shape[1] * plane) * sizeof(float));
    return 0;
}

int td_vae_decode_all(td_vae *vae, const td_tensor *latents, const td_vae_tiling *tiling,
                      td_tensor *out)
{
    int64_t sf = vae->dec.sfactor, tf = vae->dec.tfactor;
    collect col = { out };
    char s[96];
    int rc;
    if (!latents || latents->ndim != 4 || latents->shape[0] != TD_VAE_Z || latents->shape[1] < 1)
        return td_fail(vae->ctx, TD_ESHAPE, "vae: latents %s must be [%d, T>=1, h, w]",
                       latents ? td_shape_str(latents, s, sizeof(s)) : "(none)", TD_VAE_Z);
    TD_TRY(td_tensor_new(vae->ctx, out, TD_F32, 4,
                         (int64_t[]){ vae->dec.cout, 1 + tf * (latents->shape[1] - 1),
                                      latents->shape[2] * sf, latents->shape[3] * sf }));
    rc = td_vae_decode(vae, latents, tiling, collect_frames, &col);
    if (rc < 0)
        td_tensor_free(out);
    return rc;
}
