/*
 * The Wan DiT (Wan2.1 T2V 1.3B / 14B, Wan2.2 A14B I2V experts without the
 * CLIP image branch) as TurboDiffusion runs it: patch embedding, sinusoidal
 * time MLP with a 6-way modulation projection, text-embedding MLP, N blocks
 * (modulated self-attention with q/k RMSNorm and 3-D RoPE, cross-attention
 * to the text, modulated GELU FFN), modulated head, unpatchify.
 *
 * Layouts (batch 1, the backend's activation dtype; f32 on the CPU):
 *   x        [C_in, F, H, W]  latents (i2v: the 16 noisy channels followed
 *                             by the 20 conditioning channels, C_in = 36);
 *   context  [L, text_dim]    text-encoder output as the model takes it
 *                             (Wan pads it to 512 rows with zeros first; the
 *                             caller decides, see `turbodiff t2v --text-len`);
 *   out      [C_out, F, H, W] the predicted flow velocity.
 *
 * The architecture is read from tensor shapes (dit_config.c); key names of
 * the Wan / ComfyUI / TurboDiffusion layout and of diffusers'
 * WanTransformer3DModel are both accepted (dit_keys.c), as are
 * TurboDiffusion "-quant" checkpoints (Int8Linear: int8_weight + scale) and
 * SLA checkpoints (self_attn.attn_op.local_attn.proj_l).
 */
#ifndef TD_DIT_H
#define TD_DIT_H

#include "backend/backend.h"
#include "io/weights.h"

typedef struct td_dit td_dit;

typedef struct td_dit_config {
    int dim, layers, ffn_dim, heads, head_dim;
    int in_ch, out_ch, text_dim, freq_dim;
    int patch[3];        /* t, h, w */
    int i2v;             /* 36 input channels: Wan2.2 A14B I2V */
    int ti2v;            /* 48 channels in and out (the Wan2.2 VAE's latents):
                            Wan2.2 TI2V-5B, text- and image-to-video in one
                            model, the image entering as the first latent frame */
    int quant;           /* block linears are TurboDiffusion W8A8 */
    td_dtype wdtype;     /* the float linears' in the file (ffn0's, or text0's under W8A8) */
    int has_proj_l;      /* every block carries an SLA proj_l */
} td_dit_config;

typedef struct td_dit_opts {
    /* Attention heads; 0: dim / 128 (Wan's head_dim is 128 for every size:
     * 1.3B has 12 heads, 14B 40). Models with another head_dim (tiny test
     * models) must say so here. */
    int heads;
    /* LoRAs merged into the weights before they are uploaded (lora.h);
     * the paths are read during td_dit_load only. */
    const td_lora *loras;
    int n_loras;
} td_dit_opts;

typedef enum td_dit_attn_mode { TD_DIT_ATTN_FULL = 0, TD_DIT_ATTN_SLA = 1 } td_dit_attn_mode;

typedef struct td_dit_attn {
    td_dit_attn_mode mode;
    double topk;         /* SLA: fraction of key blocks kept, in (0, 1] */
} td_dit_attn;

/* Build the model over w (which must outlive it) and upload every weight
 * once through be (which must outlive it too; the model keeps it).
 * Missing tensors are TD_ENOTFOUND naming file and tensor; shapes that do
 * not fit are TD_ESHAPE naming expected and found. With opts->loras, the
 * LoRAs are merged first (their errors are lora.h's); a W8A8 checkpoint
 * with LoRAs is TD_EUNSUPPORTED. */
int td_dit_load(td_ctx *ctx, td_backend *be, const td_weights *w, const td_dit_opts *opts, td_dit **out);
const td_dit_config *td_dit_get_config(const td_dit *dit);

/*
 * The per-job state of the forward pass: every activation buffer and the
 * 3-D RoPE cos/sin tables for latents [C_in, F, H, W] and a context of L
 * rows, allocated once through the DiT's backend (in be->act) so that the
 * sampler's steps neither reallocate nor recompute them. A plan serves any
 * DiT on the same backend with the same widths, channels and patch (the two
 * experts of a Wan2.2 A14B pair share one); one forward runs on it at a time.
 */
typedef struct td_dit_plan td_dit_plan;

int td_dit_plan_new(td_dit *dit, int64_t F, int64_t H, int64_t W, int64_t L, td_dit_plan **out);
/* The backend bytes td_dit_plan_new takes for those sizes on a backend of
 * activation dtype act (the job estimate; SIZE_MAX when it overflows). */
size_t td_dit_plan_bytes(const td_dit_config *cfg, td_dtype act, int64_t F, int64_t H, int64_t W, int64_t L);
/* The largest workspace (backend.h) an op of a forward over those sizes
 * takes on be, with SLA self-attention or full, for a DiT of cfg whose
 * weights be holds in the file's dtypes. */
size_t td_dit_workspace(const td_dit_config *cfg, td_backend *be, int64_t F, int64_t H, int64_t W, int64_t L,
                        int sla);
void td_dit_plan_free(td_dit_plan **plan);

/*
 * One forward pass. x [C_in, F, H, W], context [L, text_dim] and out
 * [C_out, F, H, W] are contiguous tensors of the DiT's backend in its
 * activation dtype (F, H, W divisible by the patch). timestep is what the
 * model takes (rectified-flow t * 1000; its sinusoid is computed on the host
 * in f64 as upstream does, and written to the backend). plan NULL: a plan is
 * made and freed for this call (one-off tools); a plan made for other sizes
 * or another model shape is TD_ESHAPE. attn NULL is full attention; SLA mode
 * needs proj_l in every block (TD_ENOTFOUND naming it otherwise).
 */
int td_dit_forward(td_dit *dit, td_dit_plan *plan, const td_tensor *x, double timestep,
                   const td_tensor *context, const td_dit_attn *attn, td_tensor *out);
/*
 * The same with per-token timesteps as Wan2.2 TI2V takes them (diffusers'
 * WanTransformer3DModel given a [1, S] timestep, as WanPipeline's
 * expand_timesteps path builds it): the tokens of the first latent frame
 * (the first patch[0] frames) take first_timestep, every other token
 * timestep. Image-to-video passes 0 for the clean image frame.
 */
int td_dit_forward_first(td_dit *dit, td_dit_plan *plan, const td_tensor *x, double timestep,
                         double first_timestep, const td_tensor *context, const td_dit_attn *attn,
                         td_tensor *out);
/* Release the model and every tensor it uploaded. */
void td_dit_free(td_dit **dit);

#endif
