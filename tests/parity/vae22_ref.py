"""Reference side of the Wan2.2 VAE parity tier: tiny random diffusers
AutoencoderKLWan models in Wan2.2's configuration (z 48, residual down / up
blocks, 2x2 pixel patch, Wan2.2's latent statistics), saved in diffusers'
layout and re-keyed into Wan's Wan2.2_VAE.pth names (ComfyUI's
wan2.2_vae.safetensors keeps them)."""
import re

import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import save_file

# Wan2.2's latent statistics (wan/modules/vae2_2.py; diffusers'
# vae22_diffusers_config in scripts/convert_wan_to_diffusers.py).
WAN22_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]
WAN22_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]


def tiny_vae22(seed, base_dim=8, decoder_base_dim=12, dim_mult=(1, 2, 4, 4), num_res_blocks=2):
    """A fresh random VAE in Wan2.2's configuration (the real one is base
    160, decoder 256), gammas and biases randomised so none is a no-op."""
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(base_dim=base_dim, decoder_base_dim=decoder_base_dim, z_dim=48,
                           dim_mult=list(dim_mult), num_res_blocks=num_res_blocks,
                           temperal_downsample=[False, True, True], is_residual=True,
                           in_channels=12, out_channels=12, patch_size=2,
                           scale_factor_temporal=4, scale_factor_spatial=16,
                           latents_mean=WAN22_MEAN, latents_std=WAN22_STD)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return vae.eval()


_RES = [(".norm1.gamma", ".residual.0.gamma"), (".conv1.", ".residual.2."),
        (".norm2.gamma", ".residual.3.gamma"), (".conv2.", ".residual.6."),
        (".conv_shortcut.", ".shortcut.")]
_FIXED = {"encoder.conv_in.": "encoder.conv1.", "decoder.conv_in.": "decoder.conv1.",
          "encoder.norm_out.gamma": "encoder.head.0.gamma", "decoder.norm_out.gamma": "decoder.head.0.gamma",
          "encoder.conv_out.": "encoder.head.2.", "decoder.conv_out.": "decoder.head.2.",
          "quant_conv.": "conv1.", "post_quant_conv.": "conv2.",
          "encoder.mid_block.resnets.0.": "encoder.middle.0.", "encoder.mid_block.attentions.0.": "encoder.middle.1.",
          "encoder.mid_block.resnets.1.": "encoder.middle.2.", "decoder.mid_block.resnets.0.": "decoder.middle.0.",
          "decoder.mid_block.attentions.0.": "decoder.middle.1.", "decoder.mid_block.resnets.1.": "decoder.middle.2."}


def _res(k):
    for a, b in _RES:
        k = k.replace(a, b)
    return k


def to_wan22_keys(sd):
    """diffusers names -> Wan's vae2_2.py names: Down_ResidualBlock keeps its
    residual blocks and its resample in one Sequential 'downsamples' (the
    resample after the resnets), Up_ResidualBlock likewise in 'upsamples'."""
    nres = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r"encoder\.down_blocks\.\d+\.resnets\.(\d+)\.", k)] if m)
    out = {}
    for k, v in sd.items():
        nk = None
        for a, b in _FIXED.items():
            if k.startswith(a):
                nk = b + k[len(a):]
        if nk is not None:
            nk = _res(nk) if ".middle." in nk and ".middle.1." not in nk else nk
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k):
            nk = _res(f"encoder.downsamples.{m[1]}.downsamples.{m[2]}.{m[3]}")
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsampler\.(.*)", k):
            nk = f"encoder.downsamples.{m[1]}.downsamples.{nres}.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k):
            nk = _res(f"decoder.upsamples.{m[1]}.upsamples.{m[2]}.{m[3]}")
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsampler\.(.*)", k):
            nk = f"decoder.upsamples.{m[1]}.upsamples.{nres + 1}.{m[2]}"
        else:
            raise KeyError(f"unmapped diffusers key {k}")
        out[nk] = v.detach().clone().contiguous()
    return out


def from_wan22_keys(wan):
    """Wan's names -> diffusers', transcribing the rules of diffusers'
    convert_vae_22 (scripts/convert_wan_to_diffusers.py), as an independent
    check of to_wan22_keys."""
    inv_res = [(b, a) for a, b in _RES]
    inv_fixed = {b: a for a, b in _FIXED.items()}
    out = {}
    for k, v in wan.items():
        nk = None
        for a, b in inv_fixed.items():
            if k.startswith(a):
                nk = b + k[len(a):]
        if nk is None:
            side, blocks, inner = ("encoder", "down_blocks", "downsamples") if k.startswith("encoder.") else \
                ("decoder", "up_blocks", "upsamples")
            nk = k.replace(f"{side}.{inner}.", f"{side}.{blocks}.", 1)
            if "residual" in nk or "shortcut" in nk:
                nk = nk.replace(f".{inner}.", ".resnets.")
            else:
                parts = nk.split(".")
                nk = ".".join(parts[:3] + [inner[:-1] + "r"] + parts[5:])
        for a, b in inv_res:
            nk = nk.replace(a, b)
        out[nk] = v
    return out


def save_all(vae, st_path, pth_path, comfy_path):
    """diffusers safetensors, Wan's Wan2.2_VAE.pth, and Wan's names in a
    safetensors file (ComfyUI's wan2.2_vae.safetensors); the Wan names are
    checked to load back into the model through diffusers' own rules."""
    sd = {k: v.detach().contiguous() for k, v in vae.state_dict().items()}
    save_file(sd, str(st_path))
    wan = to_wan22_keys(sd)
    back = from_wan22_keys(wan)
    assert set(back) == set(sd), sorted(set(back) ^ set(sd))[:8]
    torch.save(wan, str(pth_path))
    save_file(wan, str(comfy_path))
