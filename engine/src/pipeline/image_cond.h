/*
 * Image-to-video conditioning as TurboDiffusion's Wan2.2 I2V script builds
 * it: the start image resized to the clip's size (antialiased bilinear, as
 * torchvision's Resize on a uint8 image), scaled to [-1, 1], encoded by the
 * VAE as the first frame of a clip whose other frames are zeros, and put
 * behind a 4-channel mask that is 1 on the first latent frame:
 *   y [20, T, h, w] = [mask (4), image latents (16)],
 * which the DiT takes after the 16 noisy channels (36 input channels).
 */
#ifndef TD_PIPELINE_IMAGE_COND_H
#define TD_PIPELINE_IMAGE_COND_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"
#include "vae/vae.h"

/* The mask channels in front of the image latents in y. */
#define TD_I2V_MASK_CH 4

/* Adaptive resolution: the size with the image's aspect ratio and about
 * the target's area, each side a multiple of 16 (upstream rounds
 * ideal side / 16 half to even, as Python's round does). */
void td_i2v_adaptive_size(int image_w, int image_h, int target_w, int target_h,
                          int *out_w, int *out_h);

/* rgb: packed RGB24 rows of an sw x sh image -> out, a new [3, dh, dw] f32
 * tensor in [-1, 1]. Resampled with the antialiased triangle filter
 * (support widened by the downscale factor) in two passes, width then
 * height, each in the 8-bit fixed point of torch's uint8 kernel. */
int td_image_prepare(td_ctx *ctx, const uint8_t *rgb, int sw, int sh, ptrdiff_t linesize,
                     int dw, int dh, td_tensor *out);

/* image [3, H, W] in [-1, 1] (host, from td_image_prepare) -> y, a new
 * backend tensor [20, T, H/8, W/8] of the VAE's backend (td_vae_backend, in
 * its activation dtype; release with its tensor_free) for a clip of
 * `frames` frames (1 + 4k: the frames the VAE encodes). The image enters
 * the backend through write; the mask is filled and the latents copied in
 * on the backend. */
int td_i2v_condition(td_ctx *ctx, td_vae *vae, const td_tensor *image, int64_t frames,
                     td_tensor *y);

#endif
