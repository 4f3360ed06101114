"""Tiny random Wan DiTs built with diffusers' WanTransformer3DModel, saved in
diffusers and Wan key layouts, for the DiT parity tests and fixtures."""
import math

import numpy as np
import torch
from diffusers import WanTransformer3DModel

# diffusers module name -> Wan (original / ComfyUI / TurboDiffusion) module name
GLOBAL_KEYS = {
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "proj_out": "head.head",
}
BLOCK_KEYS = {
    "attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o", "attn1.norm_q": "self_attn.norm_q", "attn1.norm_k": "self_attn.norm_k",
    "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k", "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o", "attn2.norm_q": "cross_attn.norm_q", "attn2.norm_k": "cross_attn.norm_k",
    "norm2": "norm3", "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2",
}


def tiny_model(gen, heads, head_dim, in_ch=16, out_ch=16, layers=2, ffn=96, text_dim=24, freq_dim=32):
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    m = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim,
                              in_channels=in_ch, out_channels=out_ch, text_dim=text_dim, freq_dim=freq_dim,
                              ffn_dim=ffn, num_layers=layers, cross_attn_norm=True,
                              qk_norm="rms_norm_across_heads", eps=1e-6)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.ndim >= 2 and "scale_shift_table" not in name:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            elif name.endswith("weight"):          # norm weights
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            else:                                  # biases, modulation tables
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return m.eval()


def wan_state_dict(m, flat_patch=False):
    out = {}
    for k, v in m.state_dict().items():
        v = v.detach().float().contiguous()
        mod, _, leaf = k.rpartition(".")
        if k.startswith("blocks."):
            _, n, rest = k.split(".", 2)
            if rest == "scale_shift_table":
                out[f"blocks.{n}.modulation"] = v
                continue
            mod, _, leaf = rest.rpartition(".")
            out[f"blocks.{n}.{BLOCK_KEYS[mod]}.{leaf}"] = v
        elif k == "scale_shift_table":
            out["head.modulation"] = v
        elif mod == "patch_embedding":
            out[k] = v.reshape(v.shape[0], -1).contiguous() if flat_patch and leaf == "weight" else v
        else:
            out[f"{GLOBAL_KEYS[mod]}.{leaf}"] = v
    return out


def reference(m, x, t, ctx):
    """diffusers forward in f64: x [C, F, H, W], t the DiT timestep, ctx [L, text_dim]."""
    md = m.to(torch.float64)
    with torch.no_grad():
        out = md(torch.as_tensor(x, dtype=torch.float64)[None], torch.tensor([t], dtype=torch.float64),
                 torch.as_tensor(ctx, dtype=torch.float64)[None], return_dict=False)[0][0]
    m.to(torch.float32)
    return out.numpy()


def reference_first(m, x, t, t_first, ctx):
    """diffusers forward in f64 with per-token timesteps, as WanPipeline's
    expand_timesteps path builds them: [1, S] with the first latent frame's
    tokens at t_first and the others at t."""
    md = m.to(torch.float64)
    pt, ph, pw = m.config.patch_size
    F, H, W = x.shape[1:]
    mask = torch.ones(F // pt, H // ph, W // pw, dtype=torch.float64)
    mask[0] = 0
    ts = (mask * t + (1 - mask) * t_first).flatten()[None]
    with torch.no_grad():
        out = md(torch.as_tensor(x, dtype=torch.float64)[None], ts,
                 torch.as_tensor(ctx, dtype=torch.float64)[None], return_dict=False)[0][0]
    m.to(torch.float32)
    return out.numpy()
