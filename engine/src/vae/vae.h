/*
 * The Wan VAEs: a causal 3-D conv encoder and decoder with channel RMS
 * norms, residual blocks, one single-head attention block in the middle,
 * and spatial / spatio-temporal resampling. Two generations load through
 * the same td_vae_load:
 *   Wan2.1 (also used by Wan2.2 A14B): 16 latent channels, 4x8x8;
 *   Wan2.2 (TI2V-5B): 48 latent channels, 4x16x16: the pixels are folded
 *     2x2 into 12 channels before the encoder (and back after the
 *     decoder), and the down / up blocks are residual, with parameter-free
 *     shortcuts (channel-group averages down, channel duplicates up).
 *
 * Layouts (batch 1), with z = td_vae_z_dim and s = td_vae_spatial_factor:
 *   frames   [3, F, H, W] in [-1, 1], F = 1 + 4k, H and W multiples of s;
 *   latents  [z, T, h, w] normalised as Wan does (z = (mu - mean) / std
 *            per channel), T = 1 + (F - 1) / 4, h = H / s, w = W / s.
 *
 * Memory: the model runs on the backend it was loaded with. Its weights are
 * uploaded once by td_vae_load; latents going in and out and frames going
 * in are backend tensors (be->ops->tensor_new and write; any float dtype
 * and strides are accepted as inputs, outputs are in be->act). Decoded
 * frames leave the backend chunk by chunk as host f32: the decoder reads
 * each chunk into a buffer of its own for the frame callback.
 *
 * Time is causal and processed chunk by chunk as Wan does it (both
 * generations): the decoder turns the first latent frame into 1 frame and
 * each further one into 4; the encoder takes 1 frame, then 4 at a time.
 * Between chunks only the inputs each causal conv needs (the last 2 frames)
 * are carried, so memory does not grow with the clip length.
 *
 * The architecture (generation, widths, depth, which resamples move time)
 * is read from tensor shapes and key presence, never the file name; Wan's
 * names (Wan2.1_VAE.pth, Wan2.2_VAE.pth; ComfyUI's wan_2.1_vae /
 * wan2.2_vae.safetensors keep them) and diffusers' AutoencoderKLWan names
 * are both accepted.
 */
#ifndef TD_VAE_H
#define TD_VAE_H

#include "backend/backend.h"
#include "io/weights.h"

typedef struct td_vae td_vae;

/* Build the model over the weights of one file (w must outlive the vae:
 * the CPU backend's upload is a view of it), uploading every weight to be.
 * Missing tensors are TD_ENOTFOUND naming file and tensor; shapes that do
 * not fit are TD_ESHAPE. A file without encoder tensors loads for decoding
 * only (td_vae_encode then fails with TD_ENOTFOUND). */
int td_vae_load(td_backend *be, const td_weights *w, td_vae **out);
/* Releases the uploaded weights; call before the backend is destroyed. */
void td_vae_free(td_vae **vae);

/* The backend the model runs on (its inputs and outputs live there). */
td_backend *td_vae_backend(const td_vae *vae);

/* Spatial factor (Wan2.1: 8, Wan2.2: 16, the 2x2 patch included) and
 * temporal factor (4) the model compresses by. */
int td_vae_spatial_factor(const td_vae *vae);
int td_vae_temporal_factor(const td_vae *vae);
int td_vae_has_encoder(const td_vae *vae);
/* Latent channels (Wan2.1: 16, Wan2.2: 48). */
int td_vae_z_dim(const td_vae *vae);
/* Decoder base width (Wan2.1: 96, Wan2.2: 256) for logs. */
int td_vae_base_dim(const td_vae *vae);

/* Optional spatial tiling of the decoder: tiles of tile x tile latent
 * pixels overlapping by overlap latent pixels, blended with linear ramps
 * across the overlap. tile <= 0 decodes untiled. */
typedef struct td_vae_tiling {
    int tile;
    int overlap;
} td_vae_tiling;

/* Receives decoded frames [3, n, H, W] (clamped to [-1, 1]) as a host f32
 * tensor (contiguous) owned by the decoder; first is the index of
 * frames[:, 0] in the clip. The tensor is valid during the call only.
 * Return non-zero to stop (the decoder returns TD_ECANCELLED). */
typedef int (*td_vae_frames_fn)(void *opaque, int64_t first, const td_tensor *frames);

/* Incremental decoder: latent frames pushed in any grouping give exactly
 * the frames one td_vae_decode of the whole clip gives. */
typedef struct td_vae_decoder td_vae_decoder;
int td_vae_decoder_open(td_vae *vae, int64_t h, int64_t w, const td_vae_tiling *tiling,
                        td_vae_decoder **out);
/* latents: a backend tensor [z, n, h, w] (n >= 1, any float dtype and
 * strides, e.g. a time slice), normalised; frames go to fn chunk by chunk,
 * as host f32. */
int td_vae_decoder_push(td_vae_decoder *dec, const td_tensor *latents,
                        td_vae_frames_fn fn, void *opaque);
void td_vae_decoder_close(td_vae_decoder **dec);
/* Bytes the decoder carries between chunks (its causal caches, backend
 * tensors): constant once the first two latent frames are in, whatever the
 * clip length. */
size_t td_vae_decoder_state_bytes(const td_vae_decoder *dec);

/* Whole clip (latents a backend tensor) through the streaming decoder. */
int td_vae_decode(td_vae *vae, const td_tensor *latents, const td_vae_tiling *tiling,
                  td_vae_frames_fn fn, void *opaque);
/* The same, collected into a new host f32 tensor out [3, F, H, W]
 * (td_tensor_free releases it). */
int td_vae_decode_all(td_vae *vae, const td_tensor *latents, const td_vae_tiling *tiling,
                      td_tensor *out);

/* frames, a backend tensor [3, F, H, W] (any float dtype and strides) ->
 * *out, a new backend tensor [z, T, h, w] in be->act holding the
 * normalised posterior mean; the caller releases it with
 * be->ops->tensor_free. */
int td_vae_encode(td_vae *vae, const td_tensor *frames, td_tensor *out);

/* Sizing without running (the job estimate). A shadow is vae seen on
 * another backend, sharing vae's uploaded weights: run on a counting
 * backend (backend.h), the encoder's and decoder's own code allocates what
 * it allocates on the real one, and no op reads a weight. Release it with
 * td_vae_shadow_free (never td_vae_free: it owns nothing). */
int td_vae_shadow(const td_vae *vae, td_backend *counter, td_vae **out);
void td_vae_shadow_free(td_vae **shadow);
/* What td_vae_decoder_push holds at most while decoding T latent frames of
 * h x w untiled, one frame per push (as the pipeline does), causal caches
 * included, measured on the counting backend `counter` (bytes above what
 * it held before), and the FLOPs of the whole clip: the first three chunks
 * run (by the third every cache is full, and every later chunk repeats
 * it). */
int td_vae_decode_cost(const td_vae *vae, td_backend *counter, int64_t T, int64_t h, int64_t w,
                       size_t *bytes, double *flops);

#endif
