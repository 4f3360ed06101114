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
 *
 * Everything stays on the backend until a chunk's frames are clamped; they
 * are then read into a host buffer the decoder owns and handed to the
 * callback: the one place frames leave the backend.
 */
#include <stdlib.h>
#include <string.h>

#include "vae_internal.h"

typedef struct tile {
    int64_t y0, x0, th, tw;   /* latent rectangle */
    td_tensor weight;         /* [th*s, tw*s] blend weights over its pixels (tiled only) */
    vae_state st;
} tile;

struct td_vae_decoder {
    td_vae *vae;
    int64_t h, w;             /* latent size */
    int ntiles;
    tile *tiles;
    td_tensor frames;         /* host f32 [3, 4, H, W]: the chunk handed to the callback */
    int64_t sf;               /* pixels per latent pixel (the patch included) */
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
static void axis_weights(double *wt, int64_t a, int64_t len, int64_t prev_end, int64_t next_start)
{
    int64_t ovl = prev_end - a, ovr = a + len - next_start;
    for (int64_t p = 0; p < len; p++) {
        double v = 1.0;
        if (ovl > 0 && p < ovl)
            v *= (p + 0.5) / ovl;
        if (ovr > 0 && p >= len - ovr)
            v *= (len - p - 0.5) / ovr;
        wt[p] = v;
    }
}

void td_vae_decoder_close(td_vae_decoder **dec)
{
    if (!dec || !*dec)
        return;
    for (int i = 0; (*dec)->tiles && i < (*dec)->ntiles; i++) {
        td_vae_state_free((*dec)->vae, &(*dec)->tiles[i].st);
        td_vae_act_free((*dec)->vae, &(*dec)->tiles[i].weight);
    }
    free((*dec)->tiles);
    td_tensor_free(&(*dec)->frames);
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

/* The tiles' pixel weights along each axis (wy[i] for tile row i, wx[j]
 * for tile column j) and their sum over the frame, all in double. */
typedef struct blend {
    int64_t sf, H, W, *ys, *xs;
    int ny, nx;
    double **wy, **wx, *wsum;
} blend;

static void blend_free(blend *b)
{
    for (int i = 0; b->wy && i < b->ny; i++)
        free(b->wy[i]);
    for (int j = 0; b->wx && j < b->nx; j++)
        free(b->wx[j]);
    free(b->wy);
    free(b->wx);
    free(b->wsum);
}

static int blend_init(td_ctx *ctx, blend *b, int64_t ts)
{
    int ok;
    b->wy = calloc((size_t)b->ny, sizeof(*b->wy));
    b->wx = calloc((size_t)b->nx, sizeof(*b->wx));
    b->wsum = calloc((size_t)(b->H * b->W), sizeof(*b->wsum));
    ok = b->wy && b->wx && b->wsum;
    for (int i = 0; ok && i < b->ny; i++) {
        ok = (b->wy[i] = malloc((size_t)(ts * b->sf) * sizeof(double))) != NULL;
        if (ok)
            axis_weights(b->wy[i], b->ys[i] * b->sf, ts * b->sf, i > 0 ? (b->ys[i - 1] + ts) * b->sf : 0,
                         i + 1 < b->ny ? b->ys[i + 1] * b->sf : b->H);
    }
    for (int j = 0; ok && j < b->nx; j++) {
        ok = (b->wx[j] = malloc((size_t)(ts * b->sf) * sizeof(double))) != NULL;
        if (ok)
            axis_weights(b->wx[j], b->xs[j] * b->sf, ts * b->sf, j > 0 ? (b->xs[j - 1] + ts) * b->sf : 0,
                         j + 1 < b->nx ? b->xs[j + 1] * b->sf : b->W);
    }
    if (!ok)
        return td_fail(ctx, TD_ENOMEM, "vae: tile weights");
    for (int i = 0; i < b->ny; i++)
        for (int j = 0; j < b->nx; j++)
            for (int64_t y = 0; y < ts * b->sf; y++)
                for (int64_t x = 0; x < ts * b->sf; x++)
                    b->wsum[(b->ys[i] * b->sf + y) * b->W + b->xs[j] * b->sf + x] += b->wy[i][y] * b->wx[j][x];
    return 0;
}

/* Tile (i, j)'s weight map wy * wx / wsum over its pixels, normalised on
 * the host in double, written once into a backend tensor. */
static int tile_weight(td_vae_decoder *d, const blend *b, int i, int j, tile *t)
{
    td_backend *be = d->vae->be;
    int64_t th = t->th * b->sf, tw = t->tw * b->sf;
    td_tensor host = { 0 };
    float *p;
    int rc;
    TD_TRY(td_tensor_new(be->ctx, &host, TD_F32, 2, (int64_t[]){ th, tw }));
    p = host.data;
    for (int64_t y = 0; y < th; y++)
        for (int64_t x = 0; x < tw; x++)
            p[y * tw + x] = (float)(b->wy[i][y] * b->wx[j][x] /
                                    b->wsum[(t->y0 * b->sf + y) * b->W + t->x0 * b->sf + x]);
    rc = be->ops->tensor_new(be, &t->weight, be->act, 2, (int64_t[]){ th, tw });
    if (rc == 0)
        rc = be->ops->write(be, &t->weight, &host);
    td_tensor_free(&host);
    return rc;
}

static int setup_tiles(td_vae_decoder *d, const td_vae_tiling *tl)
{
    td_ctx *ctx = d->vae->ctx;
    int64_t ts = tl ? tl->tile : 0, ov = tl ? tl->overlap : 0;
    blend b = { .sf = d->sf };
    int rc = 0;

    if (ts > 0 && (ov < 0 || ov >= ts))
        return td_fail(ctx, TD_EINVAL, "vae: tile overlap %lld must be in [0, tile %lld)",
                       (long long)ov, (long long)ts);
    b.H = d->h * b.sf;
    b.W = d->w * b.sf;
    b.ys = malloc((size_t)(d->h + 1) * sizeof(*b.ys));
    b.xs = malloc((size_t)(d->w + 1) * sizeof(*b.xs));
    if (!b.ys || !b.xs)
        rc = td_fail(ctx, TD_ENOMEM, "vae: tiles");
    if (rc == 0) {
        b.ny = axis_starts(d->h, ts, ov, b.ys);
        b.nx = axis_starts(d->w, ts, ov, b.xs);
        d->tiles = calloc((size_t)(b.ny * b.nx), sizeof(*d->tiles));
        if (!d->tiles)
            rc = td_fail(ctx, TD_ENOMEM, "vae: tiles");
    }
    if (rc == 0 && b.ny * b.nx > 1)
        rc = blend_init(ctx, &b, ts);
    for (int i = 0; rc == 0 && i < b.ny; i++) {
        for (int j = 0; rc == 0 && j < b.nx; j++) {
            tile *t = &d->tiles[d->ntiles++];
            t->y0 = b.ys[i];
            t->x0 = b.xs[j];
            t->th = b.ny > 1 ? ts : d->h;
            t->tw = b.nx > 1 ? ts : d->w;
            rc = td_vae_state_init(ctx, &t->st, d->vae->dec.nslots);
            if (rc == 0 && b.ny * b.nx > 1)
                rc = tile_weight(d, &b, i, j, t);
        }
    }
    blend_free(&b);
    free(b.ys);
    free(b.xs);
    return rc;
}

int td_vae_decoder_open(td_vae *vae, int64_t h, int64_t w, const td_vae_tiling *tiling,
                        td_vae_decoder **out)
{
    const vae_net *net = &vae->dec;
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
    d->sf = td_vae_spatial_factor(vae);
    rc = setup_tiles(d, tiling);
    if (rc == 0)
        rc = td_tensor_new(vae->ctx, &d->frames, TD_F32, 4,
                           (int64_t[]){ net->cout / (vae->patch * vae->patch), net->tfactor, h * d->sf, w * d->sf });
    if (rc < 0) {
        td_vae_decoder_close(&d);
        return rc;
    }
    *out = d;
    return 0;
}

/* One tile's latent frame (already denormalised) through post_quant, the
 * decoder and out of the pixel patch: z [z, 1, h, w] whole frame ->
 * *y [3, n, th*s, tw*s]. */
static int decode_tile(td_vae_decoder *d, tile *t, const td_tensor *z, td_tensor *y)
{
    static const td_conv3d_params p1 = { { 1, 1, 1 }, 0, 0, 0, 0 };
    td_vae *vae = d->vae;
    td_tensor crop = *z, pq = { 0 }, patched = { 0 }, rows, view;
    int rc = 0;
    crop.owns = 0;   /* borrowed when the tile is the whole frame */
    if (t->th != d->h || t->tw != d->w) {
        TD_TRY(td_tensor_slice(vae->ctx, z, 2, t->y0, t->th, &rows));
        TD_TRY(td_tensor_slice(vae->ctx, &rows, 3, t->x0, t->tw, &view));
        TD_TRY(td_vae_act_new(vae, &crop, vae->z, 1, t->th, t->tw));
        rc = vae->be->ops->copy(vae->be, &crop, &view, 0);
    }
    if (rc == 0)
        rc = td_vae_conv_new(vae, &crop, &vae->post_quant, &p1, &pq);
    td_vae_act_free(vae, &crop);
    if (rc == 0 && vae->patch == 1)
        rc = td_vae_net_chunk(vae, &vae->dec, &t->st, &pq, y);
    else if (rc == 0) {
        rc = td_vae_net_chunk(vae, &vae->dec, &t->st, &pq, &patched);
        if (rc == 0)
            rc = td_vae_unpatchify(vae, &patched, y);
        td_vae_act_free(vae, &patched);
    }
    td_vae_act_free(vae, &pq);
    return rc;
}

/* Tile t's frames ty [3, n, th*s, tw*s], weighted, added into its
 * rectangle of out [3, n, H, W] (ty is scaled in place). */
static int blend_tile(td_vae_decoder *d, const tile *t, td_tensor *ty, td_tensor *out)
{
    td_backend *be = d->vae->be;
    int64_t sf = d->sf;
    td_tensor rows, dst;
    TD_TRY(be->ops->mul(be, ty, &t->weight, ty));
    TD_TRY(td_tensor_slice(be->ctx, out, 2, t->y0 * sf, ty->shape[2], &rows));
    TD_TRY(td_tensor_slice(be->ctx, &rows, 3, t->x0 * sf, ty->shape[3], &dst));
    return be->ops->copy(be, &dst, ty, 1);
}

/* Every tile of latent frame z decoded and blended into *out [3, n, H, W]
 * (new, zero before the first tile is added). */
static int decode_tiles(td_vae_decoder *d, const td_tensor *z, td_tensor *out)
{
    td_vae *vae = d->vae;
    int64_t sf = d->sf;
    td_tensor ty = { 0 };
    int rc = 0;
    for (int i = 0; rc == 0 && i < d->ntiles; i++) {
        rc = decode_tile(d, &d->tiles[i], z, &ty);
        if (rc == 0 && i == 0)
            rc = td_vae_act_new(vae, out, ty.shape[0], ty.shape[1], d->h * sf, d->w * sf);
        if (rc == 0 && i == 0)
            rc = vae->be->ops->fill(vae->be, out, 0.0f);
        if (rc == 0)
            rc = blend_tile(d, &d->tiles[i], &ty, out);
        td_vae_act_free(vae, &ty);
    }
    if (rc < 0)
        td_vae_act_free(vae, out);
    return rc;
}

/* Decode latent frame z [z, 1, h, w] (denormalised) into *out [3, n, H, W],
 * clamped to [-1, 1]. */
static int decode_chunk(td_vae_decoder *d, const td_tensor *z, td_tensor *out)
{
    td_backend *be = d->vae->be;
    int rc;
    if (d->ntiles == 1)
        TD_TRY(decode_tile(d, &d->tiles[0], z, out));
    else
        TD_TRY(decode_tiles(d, z, out));
    rc = be->ops->clamp(be, out, -1.0f, 1.0f, out);
    if (rc < 0)
        td_vae_act_free(d->vae, out);
    return rc;
}

/* Hand chunk frames [3, n, H, W] (backend) to fn as host f32 frames. */
static int deliver(td_vae_decoder *d, const td_tensor *frames, td_vae_frames_fn fn, void *opaque)
{
    td_vae *vae = d->vae;
    td_tensor host;
    char s[96];
    if (frames->shape[0] != d->frames.shape[0] || frames->shape[1] > d->frames.shape[1] ||
        frames->shape[2] != d->frames.shape[2] || frames->shape[3] != d->frames.shape[3])
        return td_fail(vae->ctx, TD_ESHAPE, "vae: decoded chunk %s does not fit the frame buffer",
                       td_shape_str(frames, s, sizeof(s)));
    host = td_view4(d->frames.data, TD_F32, frames->shape[0], frames->shape[1], frames->shape[2],
                    frames->shape[3]);
    TD_TRY(vae->be->ops->read(vae->be, frames, &host));
    if (fn && fn(opaque, d->next_frame, &host))
        return td_fail(vae->ctx, TD_ECANCELLED, "vae: decoding stopped by the frame callback at frame %lld",
                       (long long)d->next_frame);
    d->next_frame += frames->shape[1];
    return 0;
}

int td_vae_decoder_push(td_vae_decoder *d, const td_tensor *lat, td_vae_frames_fn fn, void *opaque)
{
    td_vae *vae = d->vae;
    td_backend *be = vae->be;
    td_tensor z = { 0 }, frames = { 0 };
    char s[96];
    int rc = 0;

    if (!lat || !vae_is_float(lat->dtype) || lat->ndim != 4 || lat->shape[0] != vae->z || lat->shape[1] < 1 ||
        lat->shape[2] != d->h || lat->shape[3] != d->w)
        return td_fail(vae->ctx, TD_ESHAPE, "vae: latents %s must be float [%lld, T>=1, %lld, %lld]",
                       lat ? td_shape_str(lat, s, sizeof(s)) : "(none)", (long long)vae->z, (long long)d->h,
                       (long long)d->w);
    TD_TRY(td_vae_act_new(vae, &z, vae->z, 1, d->h, d->w));
    for (int64_t t = 0; rc == 0 && t < lat->shape[1]; t++) {
        rc = td_vae_copy_frames(vae, &z, 0, lat, t, 1);
        if (rc == 0)
            rc = be->ops->scale_shift(be, &z, &vae->stat[VAE_STD], &vae->stat[VAE_MEAN], &z);
        if (rc == 0)
            rc = decode_chunk(d, &z, &frames);
        if (rc == 0)
            rc = deliver(d, &frames, fn, opaque);
        td_vae_act_free(vae, &frames);
    }
    td_vae_act_free(vae, &z);
    return rc;
}

int td_vae_decode(td_vae *vae, const td_tensor *latents, const td_vae_tiling *tiling,
                  td_vae_frames_fn fn, void *opaque)
{
    td_vae_decoder *d;
    char s[96];
    int rc;
    if (!latents || latents->ndim != 4 || latents->shape[0] != vae->z)
        return td_fail(vae->ctx, TD_ESHAPE, "vae: latents %s must be [%lld, T, h, w]",
                       latents ? td_shape_str(latents, s, sizeof(s)) : "(none)", (long long)vae->z);
    TD_TRY(td_vae_decoder_open(vae, latents->shape[2], latents->shape[3], tiling, &d));
    rc = td_vae_decoder_push(d, latents, fn, opaque);
    td_vae_decoder_close(&d);
    return rc;
}

typedef struct collect {
    td_tensor *out;
} collect;

/* Host frames into the host clip: both sides are host memory. */
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
    int64_t sf = td_vae_spatial_factor(vae), tf = vae->dec.tfactor;
    collect col = { out };
    char s[96];
    int rc;
    if (!latents || latents->ndim != 4 || latents->shape[0] != vae->z || latents->shape[1] < 1)
        return td_fail(vae->ctx, TD_ESHAPE, "vae: latents %s must be [%lld, T>=1, h, w]",
                       latents ? td_shape_str(latents, s, sizeof(s)) : "(none)", (long long)vae->z);
    TD_TRY(td_tensor_new(vae->ctx, out, TD_F32, 4,
                         (int64_t[]){ vae->dec.cout / (vae->patch * vae->patch), 1 + tf * (latents->shape[1] - 1),
                                      latents->shape[2] * sf, latents->shape[3] * sf }));
    rc = td_vae_decode(vae, latents, tiling, collect_frames, &col);
    if (rc < 0)
        td_tensor_free(out);
    return rc;
}

int td_vae_shadow(const td_vae *vae, td_backend *counter, td_vae **out)
{
    td_vae *s = malloc(sizeof(*s));
    *out = NULL;
    if (!s)
        return td_fail(counter->ctx, TD_ENOMEM, "vae: out of memory for its estimate");
    *s = *vae;
    s->be = counter;
    /* the estimate's own context: the engine's may be a running job's */
    s->ctx = counter->ctx;
    *out = s;
    return 0;
}

void td_vae_shadow_free(td_vae **shadow)
{
    free(*shadow);
    *shadow = NULL;
}

int td_vae_decode_cost(const td_vae *vae, td_backend *counter, int64_t T, int64_t h, int64_t w,
                       size_t *bytes, double *flops)
{
    size_t base = td_count_live(counter);
    double f0 = td_count_flops(counter), fc = 0;
    tile t = { 0, 0, h, w, { 0 }, { 0 } };
    td_vae_decoder d = { 0 };
    td_tensor z = { 0 }, frames = { 0 };
    int64_t n = T < 3 ? T : 3;
    int rc;

    *bytes = 0;
    *flops = 0;
    TD_TRY(td_vae_shadow(vae, counter, &d.vae));
    d.h = h;
    d.w = w;
    d.ntiles = 1;
    d.tiles = &t;
    d.sf = td_vae_spatial_factor(vae);
    td_count_reset(counter);
    rc = td_vae_state_init(d.vae->ctx, &t.st, vae->dec.nslots);
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        double before = td_count_flops(counter);
        rc = td_vae_act_new(d.vae, &z, vae->z, 1, h, w);
        if (rc == 0)
            rc = decode_chunk(&d, &z, &frames);
        td_vae_act_free(d.vae, &frames);
        td_vae_act_free(d.vae, &z);
        fc = td_count_flops(counter) - before;
    }
    if (t.st.slots)
        td_vae_state_free(d.vae, &t.st);
    td_vae_shadow_free(&d.vae);
    *bytes = td_count_peak(counter) - base;
    /* the first chunks as run, then every later one as the last */
    *flops = td_count_flops(counter) - f0 + (double)(T - n) * fc;
    return rc;
}
