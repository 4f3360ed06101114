"""turbodiff i2v (and t2v) with a Wan2.2 A14B-style expert pair: a 4-step rCM
run with given noises against the same loop written in PyTorch over
diffusers' WanTransformer3DModel (f64), as TurboDiffusion's
wan2.2_i2v_infer.py runs it: the high-noise expert while t >= boundary, then
the low-noise one; the DiT input is cat([x, y], channels) with
y = cat([mask (4 channels, 1 on the first latent frame), image latents (16)])."""
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import rel_l2, run_td
from dit_ref import reference, tiny_model, wan_state_dict

SHAPE = (16, 2, 4, 6)          # latents of --frames 5 --size 48x32


def rcm_times(steps, sigma_max):
    ts = torch.tensor([math.atan(sigma_max), *[1.5, 1.4, 1.0][: steps - 1], 0], dtype=torch.float64)
    return torch.sin(ts) / (torch.cos(ts) + torch.sin(ts))


def rcm_two_experts(high, low, boundary, ctx, noises, sigma_max, y=None):
    ts = rcm_times(4, sigma_max)
    x = torch.from_numpy(noises[0]).double() * ts[0]
    net, switched = high, []
    for i, (t_cur, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        if t_cur.item() < boundary and net is high:
            net = low
            switched.append(i)
        inp = x.numpy() if y is None else np.concatenate([x.numpy(), y])
        v = torch.from_numpy(reference(net, inp, float(t_cur) * 1000, ctx))
        fresh = torch.from_numpy(noises[i + 1]).double() if t_next > 0 else torch.zeros_like(x)
        x = (1 - t_next) * (x - t_cur * v) + t_next * fresh
    assert switched and 0 < switched[0] < 4, "the boundary must switch experts mid-run"
    return x.numpy()


def conditioning(gen):
    """Wan2.2 I2V's y: 4 mask channels (1 on the first latent frame), then the
    VAE latents of the image followed by zero frames."""
    mask = torch.zeros(4, *SHAPE[1:])
    mask[:, 0] = 1
    return torch.cat([mask, torch.randn(16, *SHAPE[1:], generator=gen)]).numpy()


@pytest.mark.parametrize("mode,boundary", [("i2v", None), ("i2v", 0.7), ("t2v", 0.88)])
def test_expert_pair_rcm_matches_reference(td_cli, tmp_path, seed, mode, boundary):
    gen = torch.Generator().manual_seed(seed)
    in_ch = 36 if mode == "i2v" else 16
    high, low = (tiny_model(gen, 2, 64, in_ch=in_ch) for _ in range(2))
    save_file({k: v.detach().float().contiguous() for k, v in high.state_dict().items()},
              str(tmp_path / "high.safetensors"))
    torch.save({"net." + k: v for k, v in wan_state_dict(low).items()}, str(tmp_path / "low.pth"))
    ctx = torch.randn(5, 24, generator=gen).numpy()
    noises = torch.randn(4, *SHAPE, generator=gen).numpy()
    np.save(tmp_path / "noise.npy", noises)
    np.save(tmp_path / "c.npy", ctx)
    sigma_max = 200.0 if mode == "i2v" else 80.0       # the commands' defaults
    args = ["--dit", tmp_path / "high.safetensors", "--dit-low", tmp_path / "low.pth", "--heads", 2,
            "--context-from", tmp_path / "c.npy", "--text-len", 9, "--frames", 5, "--size", "48x32",
            "--noise-from", tmp_path / "noise.npy", "--save-latents", tmp_path / "lat.npy"]
    if boundary is not None:
        args += ["--boundary", boundary]
    y = None
    if mode == "i2v":
        y = conditioning(gen)
        np.save(tmp_path / "y.npy", y)
        args += ["--cond-from", tmp_path / "y.npy"]
    run_td(td_cli, mode, *args)
    padded = np.concatenate([ctx, np.zeros((4, 24), np.float32)])
    ref = rcm_two_experts(high, low, 0.9 if boundary is None else boundary, padded, noises, sigma_max, y)
    err = rel_l2(np.load(tmp_path / "lat.npy"), ref)
    print(f"{mode} expert pair, boundary {boundary}: rel L2 {err:.3g}")
    assert err < 1e-5


@pytest.mark.parametrize("case,msg", [
    ("cond_shape", "expected [20, 2, 4, 6]"),
    ("t2v_model", "a text-to-video model"),
    ("low_mismatch", "does not match --dit"),
    ("boundary_alone", "--boundary needs --dit-low"),
    ("boundary_range", "boundary 1.5 outside (0, 1)"),
    ("no_cond", "usage: turbodiff i2v"),
])
def test_i2v_rejects_bad_input(td_cli, tmp_path, seed, case, msg):
    gen = torch.Generator().manual_seed(seed)
    small = dict(ffn=48, text_dim=16, freq_dim=16)
    save_file(wan_state_dict(tiny_model(gen, 2, 16, in_ch=36, **small)), str(tmp_path / "i2v.safetensors"))
    np.save(tmp_path / "c.npy", torch.randn(3, 16, generator=gen).numpy())
    np.save(tmp_path / "y.npy", conditioning(gen) if case != "cond_shape" else conditioning(gen)[:, :1])
    args = ["--dit", tmp_path / "i2v.safetensors", "--heads", 2, "--context-from", tmp_path / "c.npy",
            "--frames", 5, "--size", "48x32", "--save-latents", tmp_path / "lat.npy"]
    if case != "no_cond":
        args += ["--cond-from", tmp_path / "y.npy"]
    if case == "t2v_model":
        save_file(wan_state_dict(tiny_model(gen, 2, 16, **small)), str(tmp_path / "t2v.safetensors"))
        args[1] = tmp_path / "t2v.safetensors"
    if case == "low_mismatch":
        save_file(wan_state_dict(tiny_model(gen, 2, 16, in_ch=36, ffn=48, text_dim=24, freq_dim=16)),
                  str(tmp_path / "low.safetensors"))
        args += ["--dit-low", tmp_path / "low.safetensors"]
    if case == "boundary_alone":
        args += ["--boundary", 0.5]
    if case == "boundary_range":
        args += ["--dit-low", tmp_path / "i2v.safetensors", "--boundary", 1.5]
    p = run_td(td_cli, "i2v", *args, check=False)
    assert p.returncode != 0 and msg in p.stderr, p.stderr
    assert not (tmp_path / "lat.npy").exists()
