"""CPU GEMM: our linear (bench_gemm) against torch.matmul, same shapes, same
thread count; prints GFLOP/s and the ratios ours / torch.

The machine is shared, so for each shape the two sides are measured in
alternation (ours, torch, ours, torch) and each keeps its best: both then
see the same load. About 45 s on 2 cores.

usage: python bench/gemm_vs_torch.py [--build build] [--threads N]
"""
import argparse
import os
import pathlib
import subprocess
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHAPES = [(4096, 1536, 1536, 3), (4096, 1536, 8960, 2), (4096, 8960, 1536, 2)]
ROUNDS = 2


def torch_gflops(x, w, reps):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(x, w.T)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * x.shape[0] * x.shape[1] * w.shape[0] / best * 1e-9


def ours(exe, threads, m, k, n, reps):
    out = subprocess.run([str(exe), str(threads), str(m), str(k), str(n), str(reps)],
                         capture_output=True, text=True, check=True).stdout
    line = [l for l in out.splitlines() if "GFLOP/s" in l][0]
    return [float(v) for v in line[18:].split()[:4]]   # sgemm, f32, bf16, w8a8


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    exe = pathlib.Path(a.build) / "bench" / "bench_gemm"
    torch.set_num_threads(a.threads)
    print(f"threads {a.threads}, torch {torch.__version__} ({torch.get_num_threads()} threads); "
          f"best of {ROUNDS} alternating rounds; GFLOP/s")
    print(f"{'M x K x N':<18} {'sgemm':>7} {'f32':>7} {'bf16':>7} {'w8a8':>7} {'torch':>7}"
          f" {'f32/sg':>7} {'bf16/sg':>7} {'w8/sg':>7} {'sg/t':>7} {'f32/t':>7} {'bf16/t':>7}")
    for m, k, n, reps in SHAPES:
        g = torch.Generator().manual_seed(0)
        x, w = torch.rand(m, k, generator=g) - 0.5, torch.rand(n, k, generator=g) - 0.5
        torch.matmul(x, w.T)  # warm-up
        best_o, best_t = [0.0] * 4, 0.0
        for _ in range(ROUNDS):
            best_o = [max(p, q) for p, q in zip(best_o, ours(exe, a.threads, m, k, n, reps))]
            best_t = max(best_t, torch_gflops(x, w, reps))
        sg, f32, bf16, w8 = best_o
        print(f"{m:5d}x{k:5d}x{n:5d} {sg:7.1f} {f32:7.1f} {bf16:7.1f} {w8:7.1f} {best_t:7.1f}"
              f" {f32 / sg:7.3f} {bf16 / sg:7.3f} {w8 / sg:7.3f} {sg / best_t:7.3f} {f32 / best_t:7.3f}"
              f" {bf16 / best_t:7.3f}")


if __name__ == "__main__":
    main()
