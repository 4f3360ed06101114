"""Write the committed Wan VAE fixtures under tests/data/vae/ that
tests/unit/test_vae.c checks without Python:

  vae_wan.pth             tiny random VAE (base 4, dim_mult 1,2,2,2, 2 res
                          blocks, z 16) in Wan's Wan2.1_VAE.pth layout, f32
  vae_diffusers_bf16.safetensors  another one, diffusers names, bf16 weights
  vae_dec_missing.safetensors     decoder only, one tensor removed
  vae_dec_badshape.safetensors    decoder only, one gamma of the wrong width
  lat.npy [16, 3, 2, 3]   normalised latents
  dec_wan.npy, dec_bf16.npy [3, 9, 16, 24]   diffusers' decode of lat.npy (float64)
  frames.npy [3, 5, 16, 24], enc_wan.npy [16, 2, 2, 3]  diffusers' encode (float64)

Run: /work/main/.venv/bin/python tests/parity/gen_vae_fixtures.py [seed]
"""
import pathlib
import sys

import numpy as np
import torch
from safetensors.torch import save_file

from vae_ref import decode, encode, rand, to_wan_keys, tiny_vae

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "vae"
CFG = dict(base_dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=2)


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 20251125
    print(f"seed {seed}")
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    wan = tiny_vae(seed, **CFG)
    sd = {k: v.detach().contiguous() for k, v in wan.state_dict().items()}
    torch.save(to_wan_keys(sd, check=False), OUT / "vae_wan.pth")

    b16 = tiny_vae(seed + 1, **CFG)
    with torch.no_grad():           # the reference runs on the bf16-rounded weights
        for p in b16.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    sd16 = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in b16.state_dict().items()}
    save_file(sd16, str(OUT / "vae_diffusers_bf16.safetensors"))
    dec_only = {k: v for k, v in sd16.items() if not k.startswith(("encoder.", "quant_conv."))}
    missing = dict(dec_only)
    del missing["decoder.up_blocks.1.resnets.0.conv1.weight"]
    save_file(missing, str(OUT / "vae_dec_missing.safetensors"))
    bad = dict(dec_only)
    bad["decoder.mid_block.resnets.1.norm2.gamma"] = torch.ones(5, 1, 1, 1, dtype=torch.bfloat16)
    save_file(bad, str(OUT / "vae_dec_badshape.safetensors"))

    lat = rand(rng, 16, 3, 2, 3)
    np.save(OUT / "lat.npy", lat)
    np.save(OUT / "dec_wan.npy", decode(wan, lat, torch.float64).astype(np.float32))
    np.save(OUT / "dec_bf16.npy", decode(b16, lat, torch.float64).astype(np.float32))
    frames = np.clip(rand(rng, 3, 5, 16, 24, amp=0.5), -1, 1)
    np.save(OUT / "frames.npy", frames)
    np.save(OUT / "enc_wan.npy", encode(wan, frames, torch.float64).astype(np.float32))
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT}: {total} bytes")


if __name__ == "__main__":
    main()
