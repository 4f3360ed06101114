"""One full-size Wan2.1 1.3B DiT block (dim 1536, 12 heads x 128, ffn 8960,
text 4096) at 480p x 81 frames (latents 16 x 21 x 60 x 104: 32760 tokens,
512 context rows): `turbodiff dit-forward` with full attention and with SLA
(topk 0.1) against diffusers' WanTransformer3DModel (1 layer, f32) in torch.

The model is one block plus the patch/time/text embeddings and the head
(under 1 % of the block's flops). Our time is the CLI's wall time (loading
the mmapped weights and reading/writing .npy included); torch's is the
forward call. Random weights; files go to --tmp (about 0.6 GB).

    python bench/dit_block_vs_torch.py --build build --threads 2
"""
import argparse
import math
import pathlib
import subprocess
import time

import numpy as np
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

import sys
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "parity"))
from dit_ref import wan_state_dict  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tmp", default="/tmp/td_dit_bench")
    ap.add_argument("--frames", type=int, default=21)
    ap.add_argument("--height", type=int, default=60)
    ap.add_argument("--width", type=int, default=104)
    a = ap.parse_args()
    tmp = pathlib.Path(a.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128,
                              in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960,
                              num_layers=1, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                              eps=1e-6).eval()
    wan = wan_state_dict(m)
    save_file(wan, str(tmp / "full.safetensors"))
    wan["blocks.0.self_attn.attn_op.local_attn.proj_l.weight"] = torch.randn(128, 128) / math.sqrt(128)
    wan["blocks.0.self_attn.attn_op.local_attn.proj_l.bias"] = torch.zeros(128)
    save_file(wan, str(tmp / "sla.safetensors"))
    x = torch.randn(16, a.frames, a.height, a.width)
    ctx = torch.randn(512, 4096)
    np.save(tmp / "x.npy", x.numpy())
    np.save(tmp / "c.npy", ctx.numpy())
    tokens = a.frames * (a.height // 2) * (a.width // 2)
    print(f"tokens {tokens}, threads {a.threads}")

    exe = pathlib.Path(a.build) / "tools" / "turbodiff"
    for mode, f, extra in [("full", "full", []), ("sla 0.1", "sla", ["--attention", "sla", "--topk", "0.1"])]:
        t0 = time.perf_counter()
        subprocess.run([str(exe), "dit-forward", "--dit", str(tmp / f"{f}.safetensors"), "--latents",
                        str(tmp / "x.npy"), "--t", "500", "--context", str(tmp / "c.npy"), "--threads",
                        str(a.threads), "--out", str(tmp / "v.npy"), *extra], check=True)
        print(f"turbodiff {mode:8s} {time.perf_counter() - t0:8.1f} s", flush=True)
    with torch.no_grad():
        t0 = time.perf_counter()
        m(x[None], torch.tensor([500.0]), ctx[None], return_dict=False)
        print(f"torch     full     {time.perf_counter() - t0:8.1f} s", flush=True)


if __name__ == "__main__":
    main()
