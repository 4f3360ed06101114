"""Writes tests/data/dit/: a tiny random Wan DiT (2 heads x 16, dim 32, 2
layers, ffn 48, text 16, freq 16) in Wan's .pth layout with TurboDiffusion's
"net." prefix, its input and diffusers' f64 output, plus two broken copies
(a missing tensor, a transposed one) for the C unit tier (tests/unit/test_dit.c).
Run: python tests/parity/gen_dit_fixtures.py"""
import pathlib

import numpy as np
import torch
from safetensors.torch import save_file

from dit_ref import reference, tiny_model, wan_state_dict

OUT = pathlib.Path(__file__).resolve().parents[1] / "data" / "dit"
T = 737.5    # the DiT timestep the unit test passes


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(20261125)
    m = tiny_model(gen, 2, 16, ffn=48, text_dim=16, freq_dim=16)
    x = torch.randn(16, 3, 4, 6, generator=gen).numpy()
    ctx = torch.randn(5, 16, generator=gen).numpy()
    out = reference(m, x, T, ctx).astype(np.float32)
    wan = wan_state_dict(m)
    torch.save({"net." + k: v for k, v in wan.items()}, str(OUT / "tiny.pth"))
    np.save(OUT / "x.npy", x)
    np.save(OUT / "context.npy", ctx)
    np.save(OUT / "out.npy", out)
    save_file({k: v for k, v in wan.items() if k != "blocks.1.self_attn.v.bias"}, str(OUT / "missing.safetensors"))
    bad = dict(wan)
    bad["blocks.0.ffn.0.weight"] = bad["blocks.0.ffn.0.weight"].T.contiguous()
    save_file(bad, str(OUT / "badshape.safetensors"))


if __name__ == "__main__":
    main()
