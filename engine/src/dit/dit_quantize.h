/*
 * Turning a float Wan DiT checkpoint into TurboDiffusion's W8A8 "-quant"
 * layout, as thu-ml/TurboDiffusion's turbodiffusion/inference/
 * modify_model.py does with --quant_linear: every nn.Linear inside
 * model.blocks except proj_l (skip_layer="proj_l") becomes an Int8Linear
 * (turbodiffusion/ops/core.py, Int8Linear.from_linear), i.e.
 *   <name>.weight [N, K]  ->  <name>.int8_weight int8 [N, K]
 *                             <name>.scale f32 [ceil(N/128), ceil(K/128)]
 *   <name>.bias              kept (dtype too)
 * with the weight quantized by the same block quantizer as the activations
 * (int8_quant -> quant_cuda; td_cpu_w8a8_quantize, see w8a8.c): per 128x128
 * block amax = max(1e-8, max |w|), q = round_half_even(w * 128 / amax)
 * saturated to [-128, 127], scale = amax / 128. The embeddings, time MLP and
 * head sit outside model.blocks and stay float, as every other tensor does
 * (copied unchanged, dtype kept).
 *
 * Which Linears: the ten of every block in the DiT key map (self_attn q, k,
 * v, o; cross_attn q, k, v, o; ffn.0, ffn.2), in the Wan/TurboDiffusion or
 * the diffusers naming; blocks are found as the DiT loader finds them.
 */
#ifndef TD_DIT_QUANTIZE_H
#define TD_DIT_QUANTIZE_H

#include "io/weights.h"

/*
 * Write the quantized copy of w to out_path (safetensors; stored names kept,
 * file order kept). *n_linears (may be NULL) gets how many Linears were
 * quantized. Errors: TD_EINVAL for an already quantized input (it has an
 * int8_weight), TD_ENOTFOUND for a missing block Linear, TD_ESHAPE for one
 * that is not 2-D, TD_EUNSUPPORTED for a non-float one, TD_EIO when out_path
 * cannot be written (nothing is left behind then).
 */
int td_dit_quantize(td_ctx *ctx, const td_weights *w, const char *out_path, int *n_linears);

#endif
