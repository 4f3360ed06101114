#include "image_cond.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void td_i2v_adaptive_size(int image_w, int image_h, int target_w, int target_h,
                          int *out_w, int *out_h)
{
    double area = (double)target_w * target_h, aspect = (double)image_h / image_w;
    /* nearbyint rounds half to even in the default rounding mode, as
     * Python's round() in the upstream script. */
    double lat_w = nearbyint(sqrt(area / aspect) / 16), lat_h = nearbyint(sqrt(area * aspect) / 16);
    *out_w = 16 * (int)fmax(lat_w, 1);
    *out_h = 16 * (int)fmax(lat_h, 1);
}

/* One axis of the resampling: output i takes inputs first[i] ..
 * first[i] + count[i] - 1 with fixed-point weights w[i * taps + j] of
 * `precision` fractional bits (summing to about 1 << precision). */
typedef struct axis {
    int taps, precision;
    int *first, *count;
    int16_t *w;
} axis;

static void axis_free(axis *a)
{
    free(a->first);
    free(a->count);
    free(a->w);
}

/* The antialiased triangle filter of PIL's and torch's bilinear resize:
 * centred on the output pixel's centre in input coordinates, its support
 * widened by the scale when shrinking so every input pixel contributes.
 * Weights are normalised in f64, then turned into int16 with as many
 * fractional bits as the largest weight allows, as torch's uint8 kernel
 * does, so the 8-bit results match it exactly. */
static int axis_init(td_ctx *ctx, axis *a, int in, int out)
{
    double scale = (double)in / out, support = scale >= 1 ? scale : 1.0;
    double inv = scale >= 1 ? 1.0 / scale : 1.0, wmax = 0, *wd;

    a->taps = (int)ceil(support) * 2 + 1;
    a->first = malloc(sizeof(int) * (size_t)out);
    a->count = malloc(sizeof(int) * (size_t)out);
    a->w = calloc((size_t)out * (size_t)a->taps, sizeof(int16_t));
    wd = calloc((size_t)out * (size_t)a->taps, sizeof(double));
    if (!a->first || !a->count || !a->w || !wd) {
        axis_free(a);
        free(wd);
        return td_fail(ctx, TD_ENOMEM, "out of memory resizing an image to %d pixels", out);
    }
    for (int i = 0; i < out; i++) {
        double center = scale * (i + 0.5), total = 0;
        int64_t lo = (int64_t)(center - support + 0.5), hi = (int64_t)(center + support + 0.5);
        double *w = wd + (size_t)i * a->taps;
        lo = lo < 0 ? 0 : lo;
        hi = hi > in ? in : hi;
        if (hi - lo > a->taps)
            hi = lo + a->taps;
        a->first[i] = (int)lo;
        a->count[i] = (int)(hi - lo);
        for (int j = 0; j < a->count[i]; j++) {
            double x = fabs((j + lo - center + 0.5) * inv);
            w[j] = x < 1 ? 1 - x : 0;
            total += w[j];
        }
        for (int j = 0; j < a->count[i] && total > 0; j++) {
            w[j] /= total;
            wmax = fmax(wmax, w[j]);
        }
    }
    for (a->precision = 0; a->precision < 22; a->precision++)
        if ((int)(0.5 + wmax * (1 << (a->precision + 1))) >= (1 << 15))
            break;
    for (size_t k = 0; k < (size_t)out * (size_t)a->taps; k++)
        a->w[k] = (int16_t)(wd[k] < 0 ? (int)(-0.5 + wd[k] * (1 << a->precision))
                                      : (int)(0.5 + wd[k] * (1 << a->precision)));
    free(wd);
    return 0;
}

/* Rows of RGB pixels spaced `step` bytes apart: dst[i] from src through a,
 * rounded half up and clamped to 8 bits. */
static void resample(const axis *a, const uint8_t *src, ptrdiff_t src_step, uint8_t *dst,
                     ptrdiff_t dst_step, int out)
{
    for (int i = 0; i < out; i++) {
        const int16_t *w = a->w + (size_t)i * a->taps;
        for (int c = 0; c < 3; c++) {
            int32_t acc = a->precision ? 1 << (a->precision - 1) : 0;
            for (int j = 0; j < a->count[i]; j++)
                acc += w[j] * src[(a->first[i] + j) * src_step + c];
            acc >>= a->precision;
            dst[i * dst_step + c] = (uint8_t)(acc < 0 ? 0 : acc > 255 ? 255 : acc);
        }
    }
}

int td_image_prepare(td_ctx *ctx, const uint8_t *rgb, int sw, int sh, ptrdiff_t linesize,
                     int dw, int dh, td_tensor *out)
{
    axis ax = { 0 }, ay = { 0 };
    uint8_t *tmp = NULL, *fin = NULL;
    int64_t plane = (int64_t)dw * dh;
    int rc = 0;

    if (sw < 1 || sh < 1 || dw < 1 || dh < 1 || linesize < 3 * (ptrdiff_t)sw)
        return td_fail(ctx, TD_EINVAL, "image %dx%d (linesize %td) cannot be resized to %dx%d",
                       sw, sh, linesize, dw, dh);
    /* Width first into an 8-bit sh x dw image, then height: each pass only
     * when its size changes, as torchvision (like PIL) does. */
    tmp = malloc((size_t)sh * dw * 3);
    fin = malloc((size_t)plane * 3);
    if (!tmp || !fin)
        rc = td_fail(ctx, TD_ENOMEM, "out of memory resizing a %dx%d image to %dx%d", sw, sh, dw, dh);
    if (rc == 0 && sw != dw)
        rc = axis_init(ctx, &ax, sw, dw);
    if (rc == 0 && sh != dh)
        rc = axis_init(ctx, &ay, sh, dh);
    if (rc == 0)
        rc = td_tensor_new(ctx, out, TD_F32, 3, (int64_t[]){ 3, dh, dw });
    if (rc == 0) {
        for (int y = 0; y < sh; y++) {
            if (sw != dw)
                resample(&ax, rgb + y * linesize, 3, tmp + (size_t)y * dw * 3, 3, dw);
            else
                memcpy(tmp + (size_t)y * dw * 3, rgb + y * linesize, (size_t)dw * 3);
        }
        for (int x = 0; x < dw; x++) {
            if (sh != dh)
                resample(&ay, tmp + (size_t)x * 3, (ptrdiff_t)dw * 3, fin + (size_t)x * 3,
                         (ptrdiff_t)dw * 3, dh);
            else
                for (int y = 0; y < dh; y++)
                    memcpy(fin + ((size_t)y * dw + x) * 3, tmp + ((size_t)y * dw + x) * 3, 3);
        }
        /* ToDtype(scale=True) then Normalize(0.5, 0.5): v / 255 * 2 - 1 */
        for (int64_t p = 0; p < plane; p++)
            for (int c = 0; c < 3; c++)
                ((float *)out->data)[c * plane + p] = (fin[p * 3 + c] / 255.0f - 0.5f) / 0.5f;
    }
    axis_free(&ax);
    axis_free(&ay);
    free(tmp);
    free(fin);
    return rc;
}

/* The clip the VAE sees: the image as frame 0, then zero frames, so its
 * causal caches carry the image into every latent frame. */
static int image_clip(td_ctx *ctx, td_backend *be, const td_tensor *image, int64_t frames,
                      td_tensor *clip)
{
    int64_t H = image->shape[1], W = image->shape[2];
    td_tensor img4, first;
    int rc;
    TD_TRY(td_tensor_reshape(ctx, image, 4, (int64_t[]){ 3, 1, H, W }, &img4));
    TD_TRY(be->ops->tensor_new(be, clip, be->act, 4, (int64_t[]){ 3, frames, H, W }));
    rc = be->ops->fill(be, clip, 0.0f);
    if (rc == 0)
        rc = td_tensor_slice(ctx, clip, 1, 0, 1, &first);
    if (rc == 0)
        rc = be->ops->write(be, &first, &img4);
    if (rc < 0)
        be->ops->tensor_free(be, clip);
    return rc;
}

/* y [20, T, h, w]: the mask (1 on latent frame 0, else 0), then lat. */
static int mask_and_latents(td_ctx *ctx, td_backend *be, const td_tensor *lat, td_tensor *y)
{
    td_tensor mask, first, dst;
    TD_TRY(td_tensor_slice(ctx, y, 0, 0, TD_I2V_MASK_CH, &mask));
    TD_TRY(be->ops->fill(be, &mask, 0.0f));
    TD_TRY(td_tensor_slice(ctx, &mask, 1, 0, 1, &first));
    TD_TRY(be->ops->fill(be, &first, 1.0f));
    TD_TRY(td_tensor_slice(ctx, y, 0, TD_I2V_MASK_CH, lat->shape[0], &dst));
    return be->ops->copy(be, &dst, lat, 0);
}

int td_i2v_condition(td_ctx *ctx, td_vae *vae, const td_tensor *image, int64_t frames,
                     td_tensor *y)
{
    td_backend *be = td_vae_backend(vae);
    int64_t H = image->shape[1], W = image->shape[2];
    int s = td_vae_spatial_factor(vae), tf = td_vae_temporal_factor(vae);
    td_tensor clip = { 0 }, lat = { 0 };
    int rc;

    if (!td_vae_has_encoder(vae))
        return td_fail(ctx, TD_ENOTFOUND, "image-to-video needs the VAE's encoder, and the VAE "
                       "file has decoder weights only");
    if ((frames - 1) % tf)
        return td_fail(ctx, TD_EINVAL, "i2v: %lld frames is not 1 + %dk", (long long)frames, tf);
    rc = image_clip(ctx, be, image, frames, &clip);
    if (rc == 0)
        rc = td_vae_encode(vae, &clip, &lat);
    be->ops->tensor_free(be, &clip);
    if (rc == 0)
        rc = be->ops->tensor_new(be, y, be->act, 4, (int64_t[]){ TD_I2V_MASK_CH + lat.shape[0], lat.shape[1],
                                                                 H / s, W / s });
    if (rc == 0 && (rc = mask_and_latents(ctx, be, &lat, y)) < 0)
        be->ops->tensor_free(be, y);
    be->ops->tensor_free(be, &lat);
    return rc;
}
