"""The end-to-end demo (the default model, models/toy: a prompt to 17 frames
at 64x64) through `turbodiff generate`, against the same composition in
PyTorch eager on the same files and threads: the SentencePiece tokenizer,
transformers' UMT5EncoderModel (context zero-padded to 512 rows), the
engine's 4-step rCM loop over diffusers' WanTransformer3DModel
(tools/toy/train.py's `sample`) and diffusers' AutoencoderKLWan decode, all
f32.

Ours is timed twice: the job as the library reports it (`--json` stages:
text, denoise, decode) and the CLI's wall time (process start, loading the
model files and writing the .y4m included). Torch's is the pipeline call
with the models already in memory. Rounds alternate the two, best of each.

    python bench/demo_vs_torch.py --build build --threads 2
"""
import argparse
import json
import pathlib
import subprocess
import sys
import time

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from safetensors.torch import load_file

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "toy"))
import train  # noqa: E402  (the toy model's configs, tokenizer and sampler)

PROMPT = "a red circle moves right on a blue background"


def load(model):
    vocab, _ = train.tokens(model)
    t5 = train.new_t5(vocab)
    t5.load_state_dict(load_file(str(model / "umt5.safetensors")), strict=False)
    dit = WanTransformer3DModel(**train.CONFIG["dit"])
    dit.load_state_dict(load_file(str(model / "dit.safetensors")))
    vae = AutoencoderKLWan(**train.CONFIG["vae"])
    vae.load_state_dict(load_file(str(model / "vae.safetensors")))
    return t5.float().eval(), dit.float().eval(), vae.float().eval()


@torch.no_grad()
def torch_pipeline(model, t5, dit, vae, seed):
    """Seconds per stage of prompt -> frames."""
    import sentencepiece as spm
    t0 = time.perf_counter()
    ids = spm.SentencePieceProcessor(model_file=str(model / "spiece.model")).encode(PROMPT) + [1]
    states = t5(input_ids=torch.tensor([ids])).last_hidden_state[0]
    ctx = torch.zeros(1, train.TEXT_LEN, states.shape[1])
    ctx[0, : len(ids)] = states
    t1 = time.perf_counter()
    lat = train.sample(dit, ctx, (1, 16, 5, 8, 8), torch.Generator().manual_seed(seed))
    t2 = time.perf_counter()
    mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    frames = vae.decode(lat * std + mean, return_dict=False)[0]
    t3 = time.perf_counter()
    assert frames.shape == (1, 3, 17, 64, 64), frames.shape
    return {"text": t1 - t0, "denoise": t2 - t1, "decode": t3 - t2, "total": t3 - t0}


def ours(exe, threads, seed, out):
    t0 = time.perf_counter()
    r = subprocess.run([str(exe), "generate", "--prompt", PROMPT, "--seed", str(seed), "--threads", str(threads),
                        "--out", str(out), "--json"], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    j = json.loads(r.stdout)
    assert j["frames"] == 17 and j["width"] == 64, j
    return dict(j["stages"], total=j["total"], wall=wall)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="/tmp/td_demo_bench.y4m")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = ROOT / "models" / "toy"
    t5, dit, vae = load(model)
    exe = pathlib.Path(a.build) / "tools" / "turbodiff"
    best_o, best_t = None, None
    torch_pipeline(model, t5, dit, vae, 42)   # warm-up: torch's first call pays one-off setup
    for _ in range(a.rounds):
        o = ours(exe, a.threads, 42, a.out)
        t = torch_pipeline(model, t5, dit, vae, 42)
        best_o = o if best_o is None or o["total"] < best_o["total"] else best_o
        best_t = t if best_t is None or t["total"] < best_t["total"] else best_t
    print(f"threads {a.threads}, best of {a.rounds} rounds, seconds")
    print(f"{'':10s} {'text':>8s} {'denoise':>8s} {'decode':>8s} {'total':>8s}")
    for name, r in (("turbodiff", best_o), ("torch", best_t)):
        print(f"{name:10s} " + " ".join(f"{r[k]:8.3f}" for k in ("text", "denoise", "decode", "total")))
    print(f"turbodiff CLI wall (start, load, write .y4m included): {best_o['wall']:.3f} s")
    for k in ("denoise", "decode", "total"):
        print(f"torch/turbodiff {k}: {best_t[k] / best_o[k]:.2f}")
    print(f"torch pipeline / turbodiff CLI wall: {best_t['total'] / best_o['wall']:.2f}")


if __name__ == "__main__":
    main()
