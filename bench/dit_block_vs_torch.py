"""One full-size Wan2.1 1.3B DiT block (dim 1536, 12 heads x 128, ffn 8960,
text 4096) at 480p x 81 frames (latents 16 x 21 x 60 x 104: 32760 tokens,
512 context rows): `turbodiff dit-forward` against diffusers'
WanTransformer3DModel (1 layer) in torch eager, on the same threads, one
after the other, with the ratios torch/ours printed at the end.

Ours runs the block with f32 weights and full attention (issue 21's bar),
bf16 weights (what the real checkpoints hold), TurboDiffusion's W8A8
weights (`turbodiff quantize`) and SLA (topk 0.1); torch runs it in f32
and under bf16 autocast (`--variants` picks). The model is one block plus the
patch/time/text embeddings and the head (under 1 % of the block's flops).
Our time is the CLI's wall time (loading the mmapped weights and
reading/writing .npy included); torch's is the forward call. Random
weights; files go to --tmp (about 1.5 GB).

--isa caps both sides at an older CPU's instruction set on this machine:
ours through TURBODIFF_CPU_MAX_ISA and OPENBLAS_CORETYPE, torch through
ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS and ONEDNN_MAX_CPU_ISA (set
before torch loads). It times what such a CPU's code does on this one's
cores and caches, not such a CPU.

    python bench/dit_block_vs_torch.py --build build --threads 2 [--isa avx2]
"""
import argparse
import math
import os
import pathlib
import subprocess
import sys
import time

# --isa: ours, OpenBLAS, torch's own kernels, MKL, oneDNN
ISA_ENV = {
    "amx": {},
    "avx512": {"TURBODIFF_CPU_MAX_ISA": "avx512", "OPENBLAS_CORETYPE": "SkylakeX",
               "ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
               "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"},
    "avx2": {"TURBODIFF_CPU_MAX_ISA": "avx2", "OPENBLAS_CORETYPE": "Haswell",
             "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
OURS = ["full", "bf16", "w8a8", "sla"]
TORCH = ["torch", "torch-bf16"]


def args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tmp", default="/tmp/td_dit_bench")
    ap.add_argument("--frames", type=int, default=21)
    ap.add_argument("--height", type=int, default=60)
    ap.add_argument("--width", type=int, default=104)
    ap.add_argument("--isa", choices=list(ISA_ENV), default="amx")
    ap.add_argument("--variants", default="full,bf16,w8a8,sla,torch,torch-bf16",
                    help="comma-separated, of " + ",".join(OURS + TORCH))
    a = ap.parse_args()
    a.variants = a.variants.split(",")
    bad = [v for v in a.variants if v not in OURS + TORCH]
    if bad or "torch" not in a.variants and any(v in OURS for v in a.variants):
        ap.error(f"--variants: unknown {bad}" if bad else "--variants: the ratios need 'torch'")
    return a


def main():
    a = args()
    os.environ.update(ISA_ENV[a.isa])
    import numpy as np
    import torch
    from diffusers import WanTransformer3DModel
    from safetensors.torch import save_file
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "parity"))
    from dit_ref import wan_state_dict

    tmp = pathlib.Path(a.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128,
                              in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960,
                              num_layers=1, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                              eps=1e-6).eval()
    exe = pathlib.Path(a.build) / "tools" / "turbodiff"
    wan = wan_state_dict(m)
    save_file(wan, str(tmp / "full.safetensors"))
    if "bf16" in a.variants:
        save_file({k: v.to(torch.bfloat16) for k, v in wan.items()}, str(tmp / "bf16.safetensors"))
    if "w8a8" in a.variants:
        subprocess.run([str(exe), "quantize", "--in", str(tmp / "full.safetensors"), "--out",
                        str(tmp / "w8a8.safetensors"), "--threads", str(a.threads)], check=True,
                       stdout=subprocess.DEVNULL)
    if "sla" in a.variants:
        wan["blocks.0.self_attn.attn_op.local_attn.proj_l.weight"] = torch.randn(128, 128) / math.sqrt(128)
        wan["blocks.0.self_attn.attn_op.local_attn.proj_l.bias"] = torch.zeros(128)
        save_file(wan, str(tmp / "sla.safetensors"))
    x = torch.randn(16, a.frames, a.height, a.width)
    ctx = torch.randn(512, 4096)
    np.save(tmp / "x.npy", x.numpy())
    np.save(tmp / "c.npy", ctx.numpy())
    tokens = a.frames * (a.height // 2) * (a.width // 2)
    print(f"tokens {tokens}, threads {a.threads}, isa {a.isa}", flush=True)

    times = {}
    for v in a.variants:
        if v in OURS:
            extra = ["--attention", "sla", "--topk", "0.1"] if v == "sla" else []
            t0 = time.perf_counter()
            subprocess.run([str(exe), "dit-forward", "--dit", str(tmp / f"{v}.safetensors"), "--latents",
                            str(tmp / "x.npy"), "--t", "500", "--context", str(tmp / "c.npy"), "--threads",
                            str(a.threads), "--out", str(tmp / "v.npy"), *extra], check=True)
        else:
            with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=v == "torch-bf16"):
                t0 = time.perf_counter()
                m(x[None], torch.tensor([500.0]), ctx[None], return_dict=False)
        times[v] = time.perf_counter() - t0
        print(f"{v:10s} {times[v]:8.1f} s", flush=True)
    for v in a.variants:
        if v in OURS:
            print(f"torch/{v}: {times['torch'] / times[v]:.2f}"
                  + (f"   torch-bf16/{v}: {times['torch-bf16'] / times[v]:.2f}" if "torch-bf16" in times else ""))


if __name__ == "__main__":
    main()
