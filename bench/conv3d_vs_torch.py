"""One Wan VAE decoder conv (causal 3x3x3, 96 -> 96 channels, 4 frames of
240 x 416) through `turbodiff op conv3d` and through torch's F.conv3d on the
same arrays (the CLI uses every core: run it where --threads is the core
count), isolating the conv op's share of the VAE
decode ratio in bench/NOTES.md. Ours is timed twice: the op alone (the
CLI's --repeat, best of 3 calls in one process) and the whole CLI with its
.npy I/O. The two sides alternate for --rounds rounds, best of each, so
both see the same machine load.

    python bench/conv3d_vs_torch.py --build build --threads 2
"""
import argparse
import pathlib
import re
import subprocess
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 4, 240, 416), dtype=np.float32)
    w = rng.standard_normal((96, 96, 3, 3, 3), dtype=np.float32) * 0.05
    b = np.zeros(96, np.float32)
    d = pathlib.Path(tempfile.mkdtemp())
    for n, v in (("x", x), ("w", w), ("b", b)):
        np.save(d / f"{n}.npy", v)
    xt, ours, op, best = torch.from_numpy(x)[None], float("inf"), float("inf"), float("inf")
    cmd = [str(pathlib.Path(a.build) / "tools" / "turbodiff"), "op", "conv3d", "--pad", "2,0,1,1",
           "--stride", "1,1,1", d / "x.npy", d / "w.npy", d / "b.npy", d / "y.npy"]
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        ours = min(ours, time.perf_counter() - t0)
        p = subprocess.run(cmd[:3] + ["--repeat", "3"] + cmd[3:], check=True, capture_output=True, text=True)
        op = min(op, float(re.search(r"best of 3: ([0-9.]+) s", p.stderr).group(1)))
        t0 = time.perf_counter()
        y = F.conv3d(F.pad(xt, (1, 1, 1, 1, 2, 0)), torch.from_numpy(w), torch.from_numpy(b))
        best = min(best, time.perf_counter() - t0)
    yo = np.load(d / "y.npy")
    ref = y[0].numpy()
    gf = 2 * 96 * 96 * 27 * 4 * 240 * 416 / 1e9
    print(f"rel L2 ours vs torch {np.linalg.norm(yo - ref) / np.linalg.norm(ref):.2g}")
    print(f"ours: op {op:.2f} s {gf / op:.0f} GFLOP/s, CLI incl. npy I/O {ours:.2f} s; "
          f"torch {best:.2f} s {gf / best:.0f} GFLOP/s; torch/ours time: op {best / op:.2f}, "
          f"CLI {best / ours:.2f}")


if __name__ == "__main__":
    main()
