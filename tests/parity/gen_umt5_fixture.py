"""Write the committed umT5 fixture, so the C unit tier
(tests/unit/test_umt5.c) checks the encoder against transformers without
Python:

  tests/data/t5/enc_f32.safetensors   tiny random UMT5EncoderModel, transformers/ComfyUI
                                      names, f32 (2 layers, d_model 32, 2 heads x 16, d_ff 64)
  tests/data/t5/enc_bf16.pth          the same weights rounded to bf16, Wan's names
  tests/data/t5/ids.npy               140 int32 ids (past 128: far buckets used)
  tests/data/t5/out_f32.npy           its real rows [140, 32] from UMT5EncoderModel (masked at 512)
  tests/data/t5/out_bf16.npy          the same for the bf16-rounded weights, run in f32
  tests/data/t5/buckets.npy           int32 bucket of rel = -600..600 (32 buckets, distance 128)
                                      from transformers' T5Attention._relative_position_bucket
  tests/data/t5/bad_missing.safetensors  a micro encoder lacking layer 1's wo
  tests/data/t5/bad_shape.safetensors    a micro encoder whose layer 1 k is [8, 6]

Run: /work/main/.venv/bin/python tests/parity/gen_umt5_fixture.py
Deterministic (fixed seed): re-running rewrites identical files.
"""
import pathlib
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from transformers.models.t5.modeling_t5 import T5Attention

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from umt5_ref import hf_state, reference, round_to_bf16, save, tiny_model  # noqa: E402

OUT = HERE.parent / "data" / "t5"
N_IDS = 140


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20251125)
    model = tiny_model(rng, layers=2, d_model=32, heads=2, d_kv=16, d_ff=64, vocab=300)
    ids = rng.integers(0, 300, size=N_IDS).astype(np.int32)
    save(model, OUT / "enc_f32.safetensors", "hf")
    np.save(OUT / "ids.npy", ids)
    np.save(OUT / "out_f32.npy", reference(model, list(ids))[:N_IDS])
    round_to_bf16(model)
    save(model, OUT / "enc_bf16.pth", "wan", dtype=torch.bfloat16)
    np.save(OUT / "out_bf16.npy", reference(model, list(ids))[:N_IDS])

    rel = torch.arange(-600, 601)
    b = T5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets=32,
                                              max_distance=128)
    np.save(OUT / "buckets.npy", b.numpy().astype(np.int32))

    micro = tiny_model(rng, layers=2, d_model=8, heads=2, d_kv=4, d_ff=16, vocab=20)
    sd = hf_state(micro)
    missing = dict(sd)
    del missing["encoder.block.1.layer.1.DenseReluDense.wo.weight"]
    save_file(missing, str(OUT / "bad_missing.safetensors"))
    bad = dict(sd)
    bad["encoder.block.1.layer.0.SelfAttention.k.weight"] = torch.zeros(8, 6)
    save_file(bad, str(OUT / "bad_shape.safetensors"))


if __name__ == "__main__":
    main()
