"""W8A8 linear parity: our CPU op against a PyTorch emulation of
TurboDiffusion's block quantization, written from its definition
(thu-ml/TurboDiffusion turbodiffusion/ops/quant: per 128x128 block,
amax = max(1e-8, max|x|), q = round_half_even(x * (128 / amax)) saturated to
[-128, 127], scale = amax / 128 in a row-major [ceil(M/128), ceil(K/128)]
grid; gemm: int32 sums per 128-wide K block times xscale * wscale).

The weights are made the way TurboDiffusion makes them (Int8Linear.from_linear
quantizes a float weight with the same block quantizer), so the test also
pins the layout of the weight scale tensor.
"""
import numpy as np
import pytest
import torch

from conftest import rel_l2, run_td

B = 128


def block_quant(x):
    """x float32 [M, K] -> (q int8 [M, K], scale float32 [ceil(M/B), ceil(K/B)])."""
    m, k = x.shape
    mb, kb = -(-m // B), -(-k // B)
    xp = torch.zeros(mb * B, kb * B, dtype=torch.float32)
    xp[:m, :k] = x
    blocks = xp.view(mb, B, kb, B)
    amax = blocks.abs().amax(dim=(1, 3)).clamp_min(torch.tensor(1e-8, dtype=torch.float32))
    mult = torch.tensor(128.0, dtype=torch.float32) / amax
    q = torch.round(blocks * mult[:, None, :, None]).clamp(-128, 127).to(torch.int8)
    return q.view(mb * B, kb * B)[:m, :k].contiguous(), (amax / 128.0).to(torch.float32)


def w8a8_reference(x, wq, ws, bias):
    """float64 evaluation of the blocked integer GEMM, and the magnitude of
    its terms (sum of |block term| + |bias|) to measure errors against: a
    single output that cancels to ~0 has no meaningful relative error."""
    xq, xs = block_quant(x)
    m, k = x.shape
    n = wq.shape[0]
    y = torch.zeros(m, n, dtype=torch.float64)
    mag = torch.zeros(m, n, dtype=torch.float64)
    for kb in range(-(-k // B)):
        sl = slice(kb * B, min(k, kb * B + B))
        dot = xq[:, sl].to(torch.int64) @ wq[:, sl].to(torch.int64).T
        xsr = xs[:, kb].repeat_interleave(B)[:m].to(torch.float64)
        wsr = ws[:, kb].repeat_interleave(B)[:n].to(torch.float64)
        term = dot.to(torch.float64) * xsr[:, None] * wsr[None, :]
        y += term
        mag += term.abs()
    if bias is not None:
        y += bias.to(torch.float64)[None, :]
        mag += bias.to(torch.float64).abs()[None, :]
    return xq, xs, y, mag


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 129, 5), (130, 300, 131), (257, 256, 259), (300, 640, 384)])
def test_w8a8_matches_block_quant_definition(td_cli, seed, tmp_path, m, k, n):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g, dtype=torch.float32) * 2
    # an outlier of 64 makes its block coarse with multiplier exactly 2, so
    # 0.25, 0.75, -1.25 land on the ties 0.5, 1.5, -2.5 (half to even: 0, 2, -2)
    x[0, 0] = 64.0
    ties = [0.25, 0.75, -1.25][: max(0, k - 1)]
    x[0, 1 : 1 + len(ties)] = torch.tensor(ties)
    w = torch.randn(n, k, generator=g, dtype=torch.float32) * 0.05
    wq, ws = block_quant(w)
    bias = torch.randn(n, generator=g, dtype=torch.float32) if m % 2 else None

    x.numpy().tofile(tmp_path / "x")
    wq.numpy().tofile(tmp_path / "wq")
    ws.numpy().tofile(tmp_path / "ws")
    if bias is not None:
        bias.numpy().tofile(tmp_path / "b")
    run_td(td_cli, "w8a8", m, k, n, tmp_path / "x", tmp_path / "wq", tmp_path / "ws",
           tmp_path / "b" if bias is not None else "-", tmp_path / "out")

    xq_ref, xs_ref, y_ref, mag = w8a8_reference(x, wq, ws, bias)
    xq = np.fromfile(tmp_path / "out.xq", dtype=np.int8).reshape(m, k)
    xs = np.fromfile(tmp_path / "out.xs", dtype=np.float32).reshape(xs_ref.shape)
    y = np.fromfile(tmp_path / "out.y", dtype=np.float32).reshape(m, n)

    mism = np.count_nonzero(xq != xq_ref.numpy())
    assert mism == 0, f"{mism} quantized activations differ"
    assert np.array_equal(xs, xs_ref.numpy()), "activation block scales differ"
    assert np.all(np.isfinite(y))
    err = float(np.linalg.norm(y - y_ref.numpy()) / np.linalg.norm(mag.numpy()))
    print(f"m={m} k={k} n={n}: error / term magnitude {err:.3g}, rel l2 {rel_l2(y, y_ref.numpy()):.3g}")
    assert err < 1e-6


def test_w8a8_rejects_wrong_sizes(td_cli, tmp_path):
    np.zeros(10, dtype=np.float32).tofile(tmp_path / "x")
    p = run_td(td_cli, "w8a8", 2, 4, 3, tmp_path / "x", tmp_path / "x", tmp_path / "x", "-",
               tmp_path / "out", check=False)
    assert p.returncode != 0 and "expected" in p.stderr
