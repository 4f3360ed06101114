"""Writes tests/data/ops/*.npy: small inputs and torch / TurboDiffusion-
definition outputs for the ops whose semantics are easiest to get subtly
wrong (W8A8 block quantization, attention with bias and kv_len, causal
conv3d with bf16 weights, rope, channel RMS norm), so the C unit tier
(tests/unit/test_ops_fixtures.c) checks them without Python.
Deterministic: rerunning reproduces the committed files.

usage: python tests/parity/gen_ops_fixtures.py
"""
import math
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

from test_w8a8 import block_quant, w8a8_reference

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "ops"


def rnd(g, *shape, amp=1.0):
    return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1).to(torch.float32) * amp


def save(name, t):
    a = t.numpy() if isinstance(t, torch.Tensor) else t
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    np.save(OUT / f"{name}.npy", a)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(1234)

    # W8A8: an outlier of 64 gives multiplier 2, so 0.25/0.75/-1.25 hit ties
    x = rnd(g, 130, 200, amp=3)
    x[0, 0], x[0, 1], x[0, 2], x[0, 3] = 64.0, 0.25, 0.75, -1.25
    wq, ws = block_quant(rnd(g, 70, 200, amp=0.05))
    b = rnd(g, 70)
    xq, xs, y, _ = w8a8_reference(x, wq, ws, b)
    for n, t in [("w8a8_x", x), ("w8a8_wq", wq), ("w8a8_ws", ws), ("w8a8_b", b),
                 ("w8a8_xq", xq), ("w8a8_xs", xs), ("w8a8_y", y)]:
        save(n, t)

    # attention with a T5-style bias and keys past kv_len masked
    sq, sk, h, d = 40, 45, 2, 8
    q, k, v, bias = rnd(g, sq, h, d, amp=2), rnd(g, sk, h, d, amp=2), rnd(g, sk, h, d), rnd(g, h, sq, sk)
    mask = bias.double().clone()
    mask[:, :, 41:] = -math.inf
    out = F.scaled_dot_product_attention(q.double().transpose(0, 1), k.double().transpose(0, 1),
                                         v.double().transpose(0, 1), attn_mask=mask, scale=0.3)
    for n, t in [("att_q", q), ("att_k", k), ("att_v", v), ("att_bias", bias), ("att_out", out.transpose(0, 1))]:
        save(n, t)

    # causal conv3d (time padded 2 in front), bf16 weights
    cx = rnd(g, 3, 4, 6, 5)
    cw = rnd(g, 4, 3, 3, 3, 3, amp=0.3).to(torch.bfloat16).to(torch.float32)
    cb = rnd(g, 4)
    cy = F.conv3d(F.pad(cx.double()[None], (1, 1, 1, 1, 2, 0)), cw.double(), cb.double())[0]
    for n, t in [("conv_x", cx), ("conv_w", cw), ("conv_b", cb), ("conv_y", cy)]:
        save(n, t)

    # rope as Wan applies it: complex multiply of interleaved pairs
    rx = rnd(g, 11, 2, 8)
    ang = rnd(g, 11, 4, amp=math.pi).double()
    rc = torch.view_as_complex(rx.double().reshape(11, 2, 4, 2)) * torch.polar(torch.ones_like(ang), ang)[:, None]
    for n, t in [("rope_x", rx), ("rope_cos", torch.cos(ang)), ("rope_sin", torch.sin(ang)),
                 ("rope_y", torch.view_as_real(rc).flatten(2))]:
        save(n, t)

    # Wan VAE channel RMS norm
    nx, ng, nb = rnd(g, 16, 2, 3, 5), rnd(g, 16, 1, 1, 1), rnd(g, 16)
    ny = F.normalize(nx.double()[None], dim=1)[0] * 4.0 * ng.double() + nb.double().view(16, 1, 1, 1)
    for n, t in [("crms_x", nx), ("crms_gamma", ng), ("crms_bias", nb), ("crms_y", ny)]:
        save(n, t)


if __name__ == "__main__":
    main()
