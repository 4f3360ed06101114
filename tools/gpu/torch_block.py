"""The ops of bench/bench_cuda_block.c in PyTorch bf16 on the same GPU, with
the same shapes and names, so the two tables line up: one Wan2.1-1.3B DiT
block at 480p x 81 frames (S = 32760), dim 1536, 12 heads x 128, FFN 8960,
512 text rows. torch only (no diffusers on the GPU machine). Attention is
F.scaled_dot_product_attention (flash on Hopper); PyTorch has no SLA, so
that line says so. Times are medians of CUDA-event-timed calls after a
warm-up, on random data. Prints "op ms" lines.

    python3 tools/gpu/torch_block.py
"""
import math

import torch
import torch.nn.functional as F

S, DIM, HEADS, HD, FFN, CTX = 32760, 1536, 12, 128, 8960, 512


def median_ms(fn, reps=None):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    once = start.elapsed_time(end)
    reps = reps or max(3, min(50, int(300 / max(once, 1e-3))))
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def rope(x, cos, sin):
    # interleaved pairs, as the backend's rope op
    xr = x.view(S, HEADS, HD // 2, 2).float()
    re, im = xr[..., 0], xr[..., 1]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.stack((re * c - im * s, re * s + im * c), -1).flatten(-2).to(x.dtype)


def main():
    torch.manual_seed(0)
    dev, bf = "cuda", torch.bfloat16

    def r(*shape, amp=1.0, dtype=bf):
        return ((torch.rand(*shape, device=dev) * 2 - 1) * amp).to(dtype)

    x, ctx = r(S, DIM), r(CTX, DIM)
    w, w1, w2 = r(DIM, DIM, amp=0.025), r(FFN, DIM, amp=0.025), r(DIM, FFN, amp=0.01)
    bias, b1 = r(DIM, amp=0.1), r(FFN, amp=0.1)
    vec, vec2 = r(DIM, amp=0.5, dtype=torch.float32), r(DIM, amp=0.5, dtype=torch.float32)
    cos, sin = r(S, HD // 2, dtype=torch.float32), r(S, HD // 2, dtype=torch.float32)
    xn, q, k, v = r(S, DIM), r(S, DIM), r(S, DIM), r(S, DIM)
    kc, vc, hid = r(CTX, DIM), r(CTX, DIM), r(S, FFN)
    scale = 1.0 / math.sqrt(HD)

    def sdpa(q, k, v):
        qh, kh, vh = (t.view(-1, HEADS, HD).transpose(0, 1)[None] for t in (q, k, v))
        return F.scaled_dot_product_attention(qh, kh, vh, scale=scale)[0].transpose(0, 1).reshape(-1, DIM)

    ops = [
        ("norm1 (layernorm)", lambda: F.layer_norm(x, (DIM,), eps=1e-6)),
        ("modulate", lambda: (xn * (1 + vec) + vec2).to(bf)),
        ("q linear", lambda: F.linear(xn, w, bias)),
        ("q linear w8a8", None),
        ("k linear", lambda: F.linear(xn, w, bias)),
        ("v linear", lambda: F.linear(xn, w, bias)),
        ("q rmsnorm", lambda: F.rms_norm(q, (DIM,), vec.to(bf), eps=1e-6)),
        ("k rmsnorm", lambda: F.rms_norm(k, (DIM,), vec.to(bf), eps=1e-6)),
        ("q rope", lambda: rope(q, cos, sin)),
        ("k rope", lambda: rope(k, cos, sin)),
        ("self attention (full)", lambda: sdpa(q, k, v)),
        ("self attention (sla 0.1)", None),
        ("o linear", lambda: F.linear(q, w, bias)),
        ("add_gated", lambda: x.add_(xn * vec.to(bf))),
        ("norm3 (layernorm affine)", lambda: F.layer_norm(x, (DIM,), vec.to(bf), vec2.to(bf), eps=1e-6)),
        ("cross q linear", lambda: F.linear(xn, w, bias)),
        ("cross k linear (text)", lambda: F.linear(ctx, w, bias)),
        ("cross v linear (text)", lambda: F.linear(ctx, w, bias)),
        ("cross q rmsnorm", lambda: F.rms_norm(q, (DIM,), vec.to(bf), eps=1e-6)),
        ("cross k rmsnorm", lambda: F.rms_norm(kc, (DIM,), vec.to(bf), eps=1e-6)),
        ("cross attention", lambda: sdpa(q, kc, vc)),
        ("cross o linear", lambda: F.linear(q, w, bias)),
        ("cross residual (add)", lambda: x.add_(xn)),
        ("norm2 (layernorm)", lambda: F.layer_norm(x, (DIM,), eps=1e-6)),
        ("ffn modulate", lambda: (xn * (1 + vec) + vec2).to(bf)),
        ("ffn up linear", lambda: F.linear(xn, w1, b1)),
        ("ffn gelu_tanh", lambda: F.gelu(hid, approximate="tanh")),
        ("ffn up linear+gelu (fused)", lambda: torch._addmm_activation(b1, xn.flatten(0, -2), w1.t(), use_gelu=True)),
        ("ffn down linear", lambda: F.linear(hid, w2, bias)),
        ("ffn add_gated", lambda: x.add_(xn * vec.to(bf))),
    ]
    print(f"# Wan2.1-1.3B block, S={S} dim={DIM} heads={HEADS}x{HD} ffn={FFN} text={CTX}, "
          f"torch {torch.__version__} bf16 on {torch.cuda.get_device_name()}")
    total = 0.0
    for name, fn in ops:
        if fn is None:
            print(f"{name:<28} {'n/a':>10}")
            continue
        t = median_ms(fn)
        total += 0 if "(fused)" in name else t   # an alternative to the two rows above it
        print(f"{name:<28} {t:10.3f} ms", flush=True)
    print(f"{'block total (full attention)':<28} {total:10.3f} ms")


if __name__ == "__main__":
    with torch.no_grad():
        main()
