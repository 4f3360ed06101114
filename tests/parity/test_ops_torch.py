"""Every CPU backend op against torch, run through `turbodiff op` on .npy
files. The C unit tests check the ops against double loops written from
backend.h; this checks that backend.h's semantics are the ones the
reference models use: torch.nn.functional for the standard ops, and the
Wan code's own formulas for rope (complex multiply of interleaved pairs,
wan/modules/model.py rope_apply) and the VAE's channel RMS norm
(F.normalize over channels * sqrt(C) * gamma + bias, wan/modules/vae.py
RMS_norm). Torch computes in float64 on the same (f32, or bf16-rounded)
inputs; ours is f32, so relative L2 < 1e-5 is the bar.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import rel_l2, run_td

TOL = 1e-5


def run_op(td_cli, tmp_path, name, inputs, *opts):
    paths = []
    for i, t in enumerate(inputs):
        if t is None:
            paths.append("-")
        else:
            p = tmp_path / f"{name}_in{i}.npy"
            np.save(p, t.detach().to(torch.float32).numpy())
            paths.append(p)
    out = tmp_path / f"{name}_out.npy"
    run_td(td_cli, "op", name, *opts, *paths, out)
    return np.load(out)


def rnd(g, *shape, amp=1.0):
    return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1).to(torch.float32) * amp


def rounded(t, dtype):
    """The values a --wdtype narrowing leaves, for the reference side."""
    return t.to(dtype).to(torch.float32) if dtype is not None else t


WDT = {"f32": None, "bf16": torch.bfloat16, "f16": torch.float16}


@pytest.mark.parametrize("wdtype", ["f32", "bf16", "f16"])
@pytest.mark.parametrize("m,k,n", [(1, 3, 5), (7, 129, 131), (130, 300, 257)])
def test_linear(td_cli, seed, tmp_path, wdtype, m, k, n):
    g = torch.Generator().manual_seed(seed)
    x, w, b = rnd(g, m, k), rnd(g, n, k, amp=0.2), rnd(g, n)
    ours = run_op(td_cli, tmp_path, "linear", [x, w, b], "--wdtype", wdtype)
    d = WDT[wdtype]
    ref = F.linear(x.double(), rounded(w, d).double(), rounded(b, d).double())
    assert rel_l2(ours, ref.numpy()) < TOL


@pytest.mark.parametrize("wdtype", ["f32", "bf16", "f16"])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("a_shape,b_batch,n,y0", [
    ((7, 129), (), 131, False),         # one matrix
    ((3, 37, 65), (3,), 40, True),      # b per batch, y read (beta)
    ((2, 2, 33, 20), (), 50, True),     # two batch dims, b shared by every batch
])
def test_matmul(td_cli, seed, tmp_path, wdtype, trans_b, a_shape, b_batch, n, y0):
    g = torch.Generator().manual_seed(seed)
    k = a_shape[-1]
    a = rnd(g, *a_shape)
    b = rnd(g, *b_batch, *((n, k) if trans_b else (k, n)), amp=0.5)
    y = rnd(g, *a_shape[:-1], n) if y0 else None
    alpha, beta = (0.75, -1.5) if y0 else (1.0, 0.0)
    ours = run_op(td_cli, tmp_path, "matmul", [a, b, y], "--trans-b", str(trans_b), "--alpha", repr(alpha),
                  "--beta", repr(beta), "--wdtype", wdtype)
    d = WDT[wdtype]
    bb = rounded(b, d).double()
    ref = alpha * torch.matmul(a.double(), bb.transpose(-1, -2) if trans_b else bb)
    if y is not None:
        ref += beta * rounded(y, d).double()   # --wdtype narrows every input after the first
    assert rel_l2(ours, ref.numpy()) < TOL


@pytest.mark.parametrize("affine", [False, True])
def test_layernorm(td_cli, seed, tmp_path, affine):
    g = torch.Generator().manual_seed(seed)
    x = rnd(g, 9, 300, amp=2) + 1.5
    w, b = (rnd(g, 300), rnd(g, 300)) if affine else (None, None)
    ours = run_op(td_cli, tmp_path, "layernorm", [x, w, b], "--eps", "1e-6")
    ref = F.layer_norm(x.double(), (300,), None if w is None else w.double(), None if b is None else b.double(), 1e-6)
    assert rel_l2(ours, ref.numpy()) < TOL


def test_rmsnorm(td_cli, seed, tmp_path):
    g = torch.Generator().manual_seed(seed)
    x, w = rnd(g, 9, 257, amp=2), rnd(g, 257)
    ours = run_op(td_cli, tmp_path, "rmsnorm", [x, w], "--eps", "1e-5")
    ref = F.rms_norm(x.double(), (257,), w.double(), 1e-5)
    assert rel_l2(ours, ref.numpy()) < TOL


@pytest.mark.parametrize("bias", [False, True])
def test_channel_rmsnorm(td_cli, seed, tmp_path, bias):
    g = torch.Generator().manual_seed(seed)
    c = 96
    x, gamma = rnd(g, c, 2, 5, 7), rnd(g, c, 1, 1, 1)
    b = rnd(g, c) if bias else None
    ours = run_op(td_cli, tmp_path, "channel_rmsnorm", [x, gamma, b])
    # Wan VAE RMS_norm(channel_first): F.normalize(x, dim=1) * dim**0.5 * gamma + bias, batch dim dropped
    ref = F.normalize(x.double()[None], dim=1)[0] * c**0.5 * gamma.double()
    if b is not None:
        ref = ref + b.double().view(c, 1, 1, 1)
    assert rel_l2(ours, ref.numpy()) < TOL


@pytest.mark.parametrize("name", ["gelu_tanh", "silu", "softmax"])
def test_pointwise(td_cli, seed, tmp_path, name):
    g = torch.Generator().manual_seed(seed)
    x = rnd(g, 13, 301, amp=8)
    ours = run_op(td_cli, tmp_path, name, [x])
    xd = x.double()
    ref = {"gelu_tanh": lambda: F.gelu(xd, approximate="tanh"), "silu": lambda: F.silu(xd),
           "softmax": lambda: torch.softmax(xd, -1)}[name]()
    assert rel_l2(ours, ref.numpy()) < TOL


def test_add_mul_modulate_gated(td_cli, seed, tmp_path):
    g = torch.Generator().manual_seed(seed)
    x, u, row = rnd(g, 11, 40), rnd(g, 11, 40), rnd(g, 40)
    sh, sc, gate = rnd(g, 1, 40), rnd(g, 1, 40), rnd(g, 1, 40)
    xd = x.double()
    assert rel_l2(run_op(td_cli, tmp_path, "add", [x, row]), (xd + row.double()).numpy()) < 1e-7
    assert rel_l2(run_op(td_cli, tmp_path, "mul", [x, u]), (xd * u.double()).numpy()) < 1e-7
    # Wan's modulation: norm(x) * (1 + scale) + shift; gated residual: x + y * gate
    assert rel_l2(run_op(td_cli, tmp_path, "modulate", [x, sh, sc]),
                  (xd * (1 + sc.double()) + sh.double()).numpy()) < TOL
    assert rel_l2(run_op(td_cli, tmp_path, "add_gated", [x, u, gate]),
                  (xd + u.double() * gate.double()).numpy()) < TOL


def test_rope_matches_wan_complex_form(td_cli, seed, tmp_path):
    g = torch.Generator().manual_seed(seed)
    s, h, d = 37, 3, 16
    x = rnd(g, s, h, d, amp=2)
    ang = rnd(g, s, d // 2, amp=math.pi).double()
    ours = run_op(td_cli, tmp_path, "rope", [x, torch.cos(ang), torch.sin(ang)])
    # wan rope_apply: view_as_complex over (.., d/2, 2) pairs times polar(1, angle)
    xc = torch.view_as_complex(x.double().reshape(s, h, d // 2, 2))
    ref = torch.view_as_real(xc * torch.polar(torch.ones_like(ang), ang)[:, None, :]).flatten(2)
    assert rel_l2(ours, ref.numpy()) < TOL


@pytest.mark.parametrize("bias,kv_len", [(False, 0), (True, 0), (True, 290), (False, 1)])
def test_attention(td_cli, seed, tmp_path, bias, kv_len):
    g = torch.Generator().manual_seed(seed)
    sq, sk, h, d, dv = 300, 301, 2, 16, 24
    q, k, v = rnd(g, sq, h, d, amp=2), rnd(g, sk, h, d, amp=2), rnd(g, sk, h, dv)
    b = rnd(g, h, sq, sk, amp=3) if bias else None
    scale = 1 / math.sqrt(d)
    ours = run_op(td_cli, tmp_path, "attention", [q, k, v, b], "--scale", repr(scale), "--kv-len", str(kv_len))
    mask = torch.zeros(h, sq, sk, dtype=torch.float64)
    if b is not None:
        mask += b.double()
    if kv_len > 0:
        mask[:, :, kv_len:] = -math.inf
    ref = F.scaled_dot_product_attention(q.double().transpose(0, 1), k.double().transpose(0, 1),
                                         v.double().transpose(0, 1), attn_mask=mask, scale=scale)
    assert rel_l2(ours, ref.transpose(0, 1).numpy()) < TOL


@pytest.mark.parametrize("kernel,stride,pad,wdtype", [
    ((3, 3, 3), (1, 1, 1), (2, 0, 1, 1), "bf16"),   # Wan causal conv: time padded in front only
    ((3, 3, 3), (1, 2, 2), (2, 0, 1, 1), "f32"),
    ((3, 1, 1), (2, 1, 1), (2, 0, 0, 0), "f16"),    # time downsampling
    ((1, 1, 1), (1, 1, 1), (0, 0, 0, 0), "f32"),
])
def test_conv3d(td_cli, seed, tmp_path, kernel, stride, pad, wdtype):
    g = torch.Generator().manual_seed(seed)
    ci, co = 5, 7
    x, w, b = rnd(g, ci, 4, 9, 11), rnd(g, co, ci, *kernel, amp=0.3), rnd(g, co)
    ours = run_op(td_cli, tmp_path, "conv3d", [x, w, b], "--stride", ",".join(map(str, stride)),
                  "--pad", ",".join(map(str, pad)), "--wdtype", wdtype)
    d = WDT[wdtype]
    xp = F.pad(x.double()[None], (pad[3], pad[3], pad[2], pad[2], pad[0], pad[1]))
    ref = F.conv3d(xp, rounded(w, d).double(), rounded(b, d).double(), stride=stride)[0]
    assert rel_l2(ours, ref.numpy()) < TOL


def test_upsample_nearest(td_cli, seed, tmp_path):
    g = torch.Generator().manual_seed(seed)
    x = rnd(g, 4, 5, 7)
    ours = run_op(td_cli, tmp_path, "upsample_nearest", [x], "--factor", "2,3")
    ref = F.interpolate(x[None], scale_factor=(2, 3), mode="nearest")[0]
    assert np.array_equal(ours, ref.numpy())
    # the Wan VAE upsamples with mode="nearest-exact": the same for integer factors
    ref = F.interpolate(x[None], scale_factor=(2, 3), mode="nearest-exact")[0]
    assert np.array_equal(ours, ref.numpy())


def test_op_reports_bad_shapes(td_cli, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 4), np.float32))
    np.save(tmp_path / "w.npy", np.zeros((5, 6), np.float32))
    p = run_td(td_cli, "op", "linear", tmp_path / "x.npy", tmp_path / "w.npy", "-", tmp_path / "y.npy", check=False)
    assert p.returncode != 0 and "linear" in p.stderr
    p = run_td(td_cli, "op", "matmul", tmp_path / "x.npy", tmp_path / "w.npy", "-", tmp_path / "y.npy", check=False)
    assert p.returncode != 0 and "matmul" in p.stderr
