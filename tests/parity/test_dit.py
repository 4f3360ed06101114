"""Wan DiT parity: our dit-forward / t2v against diffusers' WanTransformer3DModel
(tiny random configs, f64 reference), in diffusers and Wan key layouts."""
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import rel_l2, run_td
from dit_ref import reference, tiny_model, wan_state_dict


def save_layouts(m, d):
    """The same weights as diffusers safetensors, Wan .pth (net. prefix) and
    TurboDiffusion-style safetensors (flat Linear patch embedding)."""
    files = {}
    sd = {k: v.detach().float().contiguous() for k, v in m.state_dict().items()}
    files["diffusers"] = d / "diffusers.safetensors"
    save_file(sd, str(files["diffusers"]))
    wan = wan_state_dict(m)
    files["wan_pth"] = d / "wan.pth"
    torch.save({"net." + k: v for k, v in wan.items()}, str(files["wan_pth"]))
    files["turbo"] = d / "turbo.safetensors"
    save_file(wan_state_dict(m, flat_patch=True), str(files["turbo"]))
    return files


@pytest.mark.parametrize("in_ch,heads,head_dim", [(16, 3, 64), (36, 2, 128)])
def test_dit_forward_matches_diffusers(td_cli, tmp_path, seed, in_ch, heads, head_dim):
    gen = torch.Generator().manual_seed(seed)
    m = tiny_model(gen, heads, head_dim, in_ch=in_ch)
    x = torch.randn(in_ch, 3, 6, 8, generator=gen).numpy()
    ctx = torch.randn(7, 24, generator=gen).numpy()
    t = float(torch.rand(1, generator=gen)) * 1000
    ref = reference(m, x, t, ctx)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "c.npy", ctx)
    for layout, path in save_layouts(m, tmp_path).items():
        out = tmp_path / f"v_{layout}.npy"
        run_td(td_cli, "dit-forward", "--dit", path, "--latents", tmp_path / "x.npy", "--t", repr(t),
               "--context", tmp_path / "c.npy", "--heads", heads, "--out", out)
        err = rel_l2(np.load(out), ref)
        print(f"in {in_ch} heads {heads}x{head_dim} {layout}: rel L2 {err:.3g}")
        assert err < 1e-5, layout


def rcm_reference(m, ctx, noises, steps, sigma_max, ode):
    mid_t = [1.5, 1.4, 1.0][: steps - 1]
    ts = torch.tensor([math.atan(sigma_max), *mid_t, 0], dtype=torch.float64)
    ts = torch.sin(ts) / (torch.cos(ts) + torch.sin(ts))
    x = torch.from_numpy(noises[0]).double() * ts[0]
    for i, (t_cur, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        v = torch.from_numpy(reference(m, x.numpy(), float(t_cur) * 1000, ctx))
        if ode:
            x = x - (t_cur - t_next) * v
        else:
            fresh = torch.from_numpy(noises[i + 1]).double() if t_next > 0 else torch.zeros_like(x)
            x = (1 - t_next) * (x - t_cur * v) + t_next * fresh
    return x.numpy()


@pytest.mark.parametrize("ode", [False, True])
def test_t2v_rcm_matches_reference(td_cli, tmp_path, seed, ode):
    gen = torch.Generator().manual_seed(seed)
    m = tiny_model(gen, 2, 64)
    ctx = torch.randn(5, 24, generator=gen).numpy()
    shape = (16, 2, 4, 6)                   # frames 5, size 48x32
    noises = torch.randn(4, *shape, generator=gen).numpy()
    np.save(tmp_path / "noise.npy", noises)
    np.save(tmp_path / "c.npy", ctx)
    files = save_layouts(m, tmp_path)
    run_td(td_cli, "t2v", "--dit", files["wan_pth"], "--context-from", tmp_path / "c.npy", "--text-len", 9,
           "--heads", 2, "--steps", 4, "--sigma-max", 80, "--frames", 5, "--size", "48x32",
           *(["--ode"] if ode else []), "--noise-from", tmp_path / "noise.npy",
           "--save-latents", tmp_path / "lat.npy")
    padded = np.concatenate([ctx, np.zeros((4, 24), np.float32)])
    ref = rcm_reference(m, padded, noises, 4, 80.0, ode)
    err = rel_l2(np.load(tmp_path / "lat.npy"), ref)
    print(f"t2v rCM 4 steps ode {ode}: rel L2 {err:.3g}")
    assert err < 1e-5


def test_dit_errors(td_cli, tmp_path, seed):
    gen = torch.Generator().manual_seed(seed)
    m = tiny_model(gen, 2, 64)
    wan = wan_state_dict(m)
    np.save(tmp_path / "x.npy", torch.randn(16, 1, 4, 4, generator=gen).numpy())
    np.save(tmp_path / "c.npy", torch.randn(3, 24, generator=gen).numpy())
    args = ["--latents", tmp_path / "x.npy", "--t", 500, "--context", tmp_path / "c.npy", "--heads", 2,
            "--out", tmp_path / "v.npy"]
    save_file({k: v for k, v in wan.items() if k != "blocks.1.cross_attn.k.weight"}, str(tmp_path / "miss.safetensors"))
    p = run_td(td_cli, "dit-forward", "--dit", tmp_path / "miss.safetensors", *args, check=False)
    assert p.returncode != 0 and "blocks.1.cross_attn.k.weight" in p.stderr and "miss.safetensors" in p.stderr
    bad = dict(wan)
    bad["blocks.0.ffn.2.weight"] = torch.randn(96, 128, generator=gen)   # transposed
    save_file(bad, str(tmp_path / "bad.safetensors"))
    p = run_td(td_cli, "dit-forward", "--dit", tmp_path / "bad.safetensors", *args, check=False)
    assert p.returncode != 0 and "blocks.0.ffn.2.weight" in p.stderr and "[128,96]" in p.stderr and "[96,128]" in p.stderr, p.stderr
    save_file(wan, str(tmp_path / "ok.safetensors"))
    p = run_td(td_cli, "dit-forward", "--dit", tmp_path / "ok.safetensors", *args, "--attention", "sla", check=False)
    assert p.returncode != 0 and "proj_l" in p.stderr
