"""Writes tests/data/pipeline/: a complete tiny model set with RANDOM weights
in the real file formats (Wan-layout DiT safetensors in bf16, HF-layout umT5
safetensors, and, through turbodiff.json, the committed VAE and tokenizer
fixtures). It drives the FFmpeg tier's real-generation tests and make demo:
what it draws is noise, but every stage of the engine runs.
tests/data/pipeline/i2v/ is the image-to-video set: a Wan2.2 A14B-style pair
of 36-channel experts (high and low noise) sharing the encoder and the VAE.

    .venv/bin/python tests/parity/gen_pipeline_fixture.py
"""
import json
import pathlib

import numpy as np
import torch
from safetensors.torch import save_file

from dit_ref import tiny_model, wan_state_dict
from umt5_ref import save as save_umt5, tiny_model as tiny_umt5

OUT = pathlib.Path(__file__).resolve().parents[1] / "data" / "pipeline"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(2025)
    dit = tiny_model(gen, heads=1, head_dim=128, layers=1, ffn=64, text_dim=64)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in wan_state_dict(dit).items()},
              str(OUT / "dit.safetensors"))
    save_umt5(tiny_umt5(np.random.default_rng(2025), layers=2, d_model=64, vocab=1500),
              OUT / "umt5.safetensors", "hf", dtype=torch.bfloat16)
    manifest = {"name": "tiny random model set (test fixture: draws noise)",
                "dit": "dit.safetensors", "vae": "../vae/vae_wan.pth",
                "t5": "umt5.safetensors", "tokenizer": "../text/spiece.model",
                "size": "64x32", "frames": 5}
    (OUT / "turbodiff.json").write_text(json.dumps(manifest, indent=2) + "\n")

    i2v = OUT / "i2v"
    i2v.mkdir(exist_ok=True)
    for name in ("dit_high", "dit_low"):
        dit = tiny_model(gen, heads=1, head_dim=128, in_ch=36, layers=1, ffn=64, text_dim=64)
        save_file({k: v.to(torch.bfloat16).contiguous() for k, v in wan_state_dict(dit).items()},
                  str(i2v / f"{name}.safetensors"))
    manifest = {"name": "tiny random image-to-video pair (test fixture: draws noise)",
                "dit": "dit_high.safetensors", "dit_low": "dit_low.safetensors",
                "vae": "../../vae/vae_wan.pth", "t5": "../umt5.safetensors",
                "tokenizer": "../../text/spiece.model", "size": "64x32", "frames": 5}
    (i2v / "turbodiff.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
