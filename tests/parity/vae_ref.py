"""Reference side of the Wan VAE parity tier: tiny random diffusers
AutoencoderKLWan models, saved as diffusers safetensors and re-keyed into
Wan's own Wan2.1_VAE.pth layout, plus Wan-normalised decode/encode."""
import copy
import re

import numpy as np
import torch
from diffusers import AutoencoderKLWan
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from safetensors.torch import save_file


def tiny_vae(seed, base_dim=8, dim_mult=(1, 2, 4, 4), num_res_blocks=2):
    """A fresh random Wan2.1-shaped VAE (z 16, time downsampling as Wan)."""
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(base_dim=base_dim, z_dim=16, dim_mult=list(dim_mult),
                           num_res_blocks=num_res_blocks, temperal_downsample=[False, True, True])
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):      # default ones would hide a missing gamma
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return vae.eval()


def _res(key):
    return (key.replace(".norm1.gamma", ".residual.0.gamma").replace(".conv1.", ".residual.2.")
            .replace(".norm2.gamma", ".residual.3.gamma").replace(".conv2.", ".residual.6.")
            .replace(".conv_shortcut.", ".shortcut."))


def to_wan_keys(sd, check=True):
    """diffusers AutoencoderKLWan state dict -> Wan's WanVAE_ names. check:
    verify against diffusers' own Wan -> diffusers converter, which
    hard-codes Wan2.1's layout (dim_mult 1,2,4,4, num_res_blocks 2)."""
    # flat index of decoder.up_blocks.I.{resnets.J, upsamplers.0} in Wan's decoder.upsamples
    blocks = sorted({tuple(map(int, m.groups())) for k in sd
                     for m in [re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.", k)] if m})
    flat, n = {}, 0
    for i in sorted({b[0] for b in blocks}):
        for j in sorted(b[1] for b in blocks if b[0] == i):
            flat[f"decoder.up_blocks.{i}.resnets.{j}."] = n
            n += 1
        if any(k.startswith(f"decoder.up_blocks.{i}.upsamplers.0.") for k in sd):
            flat[f"decoder.up_blocks.{i}.upsamplers.0."] = n
            n += 1
    fixed = {"encoder.conv_in.": "encoder.conv1.", "decoder.conv_in.": "decoder.conv1.",
             "encoder.norm_out.gamma": "encoder.head.0.gamma", "decoder.norm_out.gamma": "decoder.head.0.gamma",
             "encoder.conv_out.": "encoder.head.2.", "decoder.conv_out.": "decoder.head.2.",
             "quant_conv.": "conv1.", "post_quant_conv.": "conv2."}
    out = {}
    for k, v in sd.items():
        nk = None
        for a, b in fixed.items():
            if k.startswith(a):
                nk = b + k[len(a):]
        if nk is None:
            for side in ("encoder", "decoder"):
                k2 = k.replace(f"{side}.mid_block.resnets.0.", f"{side}.middle.0.")
                k2 = k2.replace(f"{side}.mid_block.attentions.0.", f"{side}.middle.1.")
                k2 = k2.replace(f"{side}.mid_block.resnets.1.", f"{side}.middle.2.")
                k = k2
            k = k.replace("encoder.down_blocks.", "encoder.downsamples.")
            for pre, idx in flat.items():
                if k.startswith(pre):
                    k = f"decoder.upsamples.{idx}." + k[len(pre):]
            nk = _res(k) if (".middle." in k or ".downsamples." in k or ".upsamples." in k) else k
        out[nk] = v.detach().clone().contiguous()
    if check:
        back = convert_wan_vae_to_diffusers(out)
        assert set(back) == set(sd), sorted(set(back) ^ set(sd))[:8]
    return out


def save_both(vae, st_path, pth_path, comfy_path=None):
    """diffusers safetensors, Wan's .pth and (comfy_path) Wan's names in a
    safetensors file, as ComfyUI's wan_2.1_vae.safetensors has them."""
    sd = {k: v.detach().contiguous() for k, v in vae.state_dict().items()}
    save_file(sd, str(st_path))
    wan = to_wan_keys(sd)
    torch.save(wan, str(pth_path))
    if comfy_path:
        save_file(wan, str(comfy_path))


def _stats(vae):
    z = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1)
    return mean, std


@torch.no_grad()
def decode(vae, latents, dtype=torch.float32):
    """latents [z, T, h, w] normalised -> frames [3, F, H, W]; dtype float64
    runs a float64 copy of the model (a reference free of f32 rounding)."""
    mean, std = _stats(vae)
    m = vae if dtype == torch.float32 else copy.deepcopy(vae).to(dtype)
    z = torch.from_numpy(latents).to(dtype)[None] * std.to(dtype) + mean.to(dtype)
    return m.decode(z).sample[0].float().numpy()


@torch.no_grad()
def encode(vae, frames, dtype=torch.float32):
    """frames [3, F, H, W] -> normalised posterior mean [z, T, h, w]."""
    mean, std = _stats(vae)
    m = vae if dtype == torch.float32 else copy.deepcopy(vae).to(dtype)
    mu = m.encode(torch.from_numpy(frames).to(dtype)[None]).latent_dist.mean
    return ((mu - mean.to(dtype)) / std.to(dtype))[0].float().numpy()


@torch.no_grad()
def decode_tiled(vae, latents, tile_px, stride_px):
    """diffusers' own tiled decode (its blending), for comparison notes."""
    mean, std = _stats(vae)
    vae.enable_tiling(tile_px, tile_px, stride_px, stride_px)
    try:
        z = torch.from_numpy(latents)[None] * std + mean
        return vae.decode(z).sample[0].numpy()
    finally:
        vae.use_tiling = False


def rand(rng, *shape, amp=1.0):
    return (amp * rng.standard_normal(shape)).astype(np.float32)
