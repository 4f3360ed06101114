"""Write the committed fixtures of the SLA op and the samplers, so the C unit
tier (tests/unit/test_sla_fixture.c, test_samplers_fixture.c) checks numbers
from the independent references without Python:

  tests/data/sla/      q, k, v [150, 2, 64], w [64, 64], b [64] and out_<blocks>_<topk>.npy
                       from the f64 oracle of test_sla.py; with TD_TURBODIFFUSION_SRC set
                       (see test_sla.py) also turbodiffusion_128x64_topk0.5.npy, the
                       output of TurboDiffusion's own Triton SLA, interpreted in f32
  tests/data/sample/   toy model a, b, a_low, b_uncond; noise [4, 24]; rcm_*.npy from
                       TurboDiffusion's loop, unipc_*.npy / euler_*.npy from diffusers'
                       UniPCMultistepScheduler (see test_samplers.py)

Run: /work/main/.venv/bin/python tests/parity/gen_sla_sample_fixtures.py
Deterministic (fixed seed): re-running rewrites identical files.
"""
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_samplers import N, Toy, flow_reference, rcm_reference  # noqa: E402
from test_sla import UPSTREAM, UPSTREAM_SCRIPT, sla_oracle  # noqa: E402

DATA = HERE.parent / "data"
SEED = 20251125

SLA_CASES = [(128, 64, 0.1), (128, 64, 0.5), (64, 128, 0.25)]


def sla_fixtures():
    d = DATA / "sla"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    S, H, D = 150, 2, 64
    arrays = dict(q=rng.standard_normal((S, H, D)) * 1.5, k=rng.standard_normal((S, H, D)) * 1.5,
                  v=rng.standard_normal((S, H, D)), w=rng.standard_normal((D, D)) / math.sqrt(D),
                  b=rng.standard_normal(D) * 0.1)
    arrays = {n: a.astype(np.float32) for n, a in arrays.items()}
    for n, a in arrays.items():
        np.save(d / f"{n}.npy", a)
    t = {n: torch.from_numpy(a).double() for n, a in arrays.items()}
    for bq, bk, topk in SLA_CASES:
        out = sla_oracle(t["q"], t["k"], t["v"], t["w"], t["b"], bq, bk, topk)
        np.save(d / f"out_{bq}x{bk}_topk{topk}.npy", out.numpy().astype(np.float32))
    if UPSTREAM:
        subprocess.run([sys.executable, "-c", UPSTREAM_SCRIPT, UPSTREAM, str(d), "0.5", "128"], check=True,
                       env=dict(os.environ, TRITON_INTERPRET="1"), capture_output=True)
        (d / "upstream.npy").rename(d / "turbodiffusion_128x64_topk0.5.npy")


def sample_fixtures():
    d = DATA / "sample"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    toy = Toy(rng, experts=True, cfg=True)
    noise = rng.standard_normal((4, N)).astype(np.float32)
    np.save(d / "a.npy", toy.A)
    np.save(d / "b.npy", toy.b)
    np.save(d / "a_low.npy", toy.A_low)
    np.save(d / "b_uncond.npy", toy.b_uncond)
    np.save(d / "noise.npy", noise)
    single = Toy.__new__(Toy)
    single.A, single.b, single.A_low, single.b_uncond = toy.A, toy.b, None, toy.b_uncond
    np.save(d / "rcm_4step.npy", rcm_reference(single, noise, 4, 80.0, False).astype(np.float32))
    np.save(d / "rcm_3step_ode.npy", rcm_reference(single, noise, 3, 80.0, True).astype(np.float32))
    np.save(d / "rcm_4step_experts.npy",
            rcm_reference(toy, noise, 4, 200.0, False, boundary=0.9).astype(np.float32))
    np.save(d / "unipc_8step_cfg4.npy", flow_reference(single, noise[0], "unipc", 8, 5.0, 4.0).astype(np.float32))
    np.save(d / "euler_8step_cfg4.npy", flow_reference(single, noise[0], "euler", 8, 5.0, 4.0).astype(np.float32))
    np.save(d / "unipc_12step_experts.npy",
            flow_reference(toy, noise[0], "unipc", 12, 3.0, 4.0, boundary=0.875, guidance_low=3.0).astype(np.float32))


if __name__ == "__main__":
    sla_fixtures()
    sample_fixtures()
    print(f"fixtures written under {DATA}")
