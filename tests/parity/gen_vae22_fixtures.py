"""Write the committed Wan2.2 VAE fixtures under tests/data/vae22/ that
tests/unit/test_vae22.c checks without Python:

  vae22_wan.pth           tiny random VAE in Wan2.2's configuration (z 48,
                          2x2 patch, residual blocks; base 4, decoder base 4,
                          dim_mult 1,2,2,2, 1 res block) in Wan's
                          Wan2.2_VAE.pth names, f32
  lat.npy [48, 3, 2, 3]   normalised latents
  dec.npy [3, 9, 32, 48]  diffusers' decode of lat.npy (float64)
  frames.npy [3, 5, 32, 48], enc.npy [48, 2, 2, 3]  diffusers' encode (float64)

Run: /work/main/.venv/bin/python tests/parity/gen_vae22_fixtures.py [seed]
"""
import pathlib
import sys

import numpy as np
import torch

from vae_ref import decode, encode, rand
from vae22_ref import from_wan22_keys, tiny_vae22, to_wan22_keys

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "vae22"
CFG = dict(base_dim=4, decoder_base_dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=1)


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 20260422
    print(f"seed {seed}")
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vae = tiny_vae22(seed, **CFG)
    sd = {k: v.detach().contiguous() for k, v in vae.state_dict().items()}
    wan = to_wan22_keys(sd)
    assert set(from_wan22_keys(wan)) == set(sd)
    torch.save(wan, OUT / "vae22_wan.pth")
    lat = rand(rng, 48, 3, 2, 3)
    np.save(OUT / "lat.npy", lat)
    np.save(OUT / "dec.npy", decode(vae, lat, torch.float64).astype(np.float32))
    frames = np.clip(rand(rng, 3, 5, 32, 48, amp=0.5), -1, 1)
    np.save(OUT / "frames.npy", frames)
    np.save(OUT / "enc.npy", encode(vae, frames, torch.float64).astype(np.float32))
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT}: {total} bytes")


if __name__ == "__main__":
    main()
