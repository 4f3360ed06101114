/*
 * LoRAs merged into a float Wan DiT checkpoint at load time.
 *
 * Formats read (safetensors or .pth, through the weight store):
 *  - diffusers / PEFT: <module>.lora_A.weight [r, in], <module>.lora_B.weight
 *    [out, r], optional <module>.lora_B.bias (a bias difference), with the
 *    prefixes "transformer.", "diffusion_model.", "base_model.model.";
 *  - kohya / ComfyUI / musubi-tuner: <module>.lora_down.weight,
 *    <module>.lora_up.weight and <module>.alpha, the module written either
 *    dotted ("diffusion_model.blocks.0.self_attn.q") or kohya's
 *    "lora_unet_blocks_0_self_attn_q" with '_' for '.';
 *  - full differences: <module>.diff (added to the weight, any shape: norms
 *    and modulation tables too) and <module>.diff_b (added to the bias).
 * Module names may be in the Wan / TurboDiffusion layout or in diffusers'
 * WanTransformer3DModel layout, whichever layout the DiT itself uses.
 *
 * Arithmetic, as diffusers' load_lora_weights + fuse_lora (PEFT's
 * LoraLayer.merge) computes it, so that a merge equals theirs bit for bit
 * in f32:
 *  - alpha (kohya): diffusers' converters fold alpha / rank into the down
 *    matrix (times a power of two, which is exact): A' = A * (alpha / rank),
 *    rounded to A's stored dtype; without alpha, A' = A;
 *  - diffusers loads the adapter in the weight's dtype: A' and B are rounded
 *    to it (a no-op for f32 weights);
 *  - delta = (B . A') in f32, each element summed over the rank in order
 *    (fused multiply-add, as PyTorch's CPU matmul does), times scale, rounded
 *    to the weight's dtype (PEFT's CPU merge casts the delta back);
 *  - W = W + delta computed in f32 and rounded to W's dtype, once per LoRA
 *    in the order given (PEFT adds each adapter in turn, in place);
 *  - bias = bias + diff_b * scale and W = W + diff * scale likewise (diff_b
 *    is PEFT's lora_B.bias; diffusers skips diff, ComfyUI adds it).
 * So bf16 weights see the roundings diffusers' CPU merge makes; ComfyUI
 * rounds once, in f32, which differs by about one bf16 ulp.
 * Quantized (int8) weights cannot take a merge exactly: they are refused.
 */
#ifndef TD_DIT_LORA_H
#define TD_DIT_LORA_H

#include "io/weights.h"

/* The merged copies of the DiT tensors the LoRAs change, each in its base
 * tensor's dtype and shape; everything else is read from the base file. */
typedef struct td_lora_merged td_lora_merged;

/*
 * Read every LoRA of loras[0..n) and merge it into copies of the tensors of
 * dit it changes. Errors, each naming the LoRA file: TD_EIO / TD_EFORMAT
 * for a file that cannot be read or a tensor that is not a LoRA tensor;
 * TD_ENOTFOUND naming the first key whose module is not in the DiT;
 * TD_ESHAPE naming the key, the shape the DiT needs and the shape found (a
 * LoRA for another model width); TD_EUNSUPPORTED for an int8 target.
 */
int td_lora_merge(td_ctx *ctx, const td_weights *dit, const td_lora *loras, int n,
                  td_lora_merged **out);

/* The merged copy of base (a tensor of the DiT's weight store), or NULL
 * when no LoRA changes it. */
const td_tensor *td_lora_merged_find(const td_lora_merged *m, const td_tensor *base);
/* How many tensors the LoRAs changed. */
int td_lora_merged_count(const td_lora_merged *m);
/* Free the merged copy whose data is `data` once a backend holds a copy of
 * its own (no-op for m NULL or data not a merged copy's). */
void td_lora_merged_release(td_lora_merged *m, const void *data);
void td_lora_merged_free(td_lora_merged **m);

#endif
