"""CPU GEMM: our linear (bench_gemm) against torch.matmul, same shapes, same
thread count, in one run; prints GFLOP/s and the ratios ours / torch.

usage: python bench/gemm_vs_torch.py [--build build] [--threads N]
"""
import argparse
import os
import pathlib
import subprocess
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]


def torch_gflops(m, k, n, reps):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(m, k, generator=g) - 0.5
    w = torch.rand(n, k, generator=g) - 0.5
    torch.matmul(x, w.T)  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(x, w.T)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * m * n * k / best * 1e-9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = subprocess.run([str(pathlib.Path(a.build) / "bench" / "bench_gemm"), str(a.threads)],
                         capture_output=True, text=True, check=True).stdout
    print(out, end="")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'M x K x N':<18} {'torch':>10} {'sgemm/t':>8} {'f32/t':>8} {'bf16/t':>8} {'w8a8/t':>8}")
    for line in out.splitlines():
        if "GFLOP/s" not in line:
            continue
        dims, rest = line[:18], line[18:].split()
        m, k, n = (int(v) for v in dims.replace(" ", "").split("x"))
        reps = int(line.rsplit("of", 1)[1].strip(" )"))
        sg, f32, bf16, w8 = (float(v) for v in rest[:4])
        t = torch_gflops(m, k, n, reps)
        print(f"{m:5d}x{k:5d}x{n:5d} {t:10.1f} {sg / t:8.3f} {f32 / t:8.3f} {bf16 / t:8.3f} {w8 / t:8.3f}")


if __name__ == "__main__":
    main()
