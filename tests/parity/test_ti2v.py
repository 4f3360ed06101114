"""Wan2.2 TI2V-5B parity: a tiny random diffusers WanTransformer3DModel in
the TI2V configuration (48 latent channels in and out) run with per-token
timesteps (the first latent frame's tokens at their own timestep, 0 for the
clean image frame), saved in diffusers', Wan's and ComfyUI's layouts,
against diffusers' forward in f64."""
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import rel_l2, run_td
from dit_ref import reference, reference_first, tiny_model, wan_state_dict


def ti2v_dit(gen, heads=2, head_dim=64, layers=2, text_dim=24, ffn=96):
    return tiny_model(gen, heads, head_dim, in_ch=48, out_ch=48, layers=layers, ffn=ffn, text_dim=text_dim)


def save_ti2v_layouts(m, d):
    """diffusers safetensors, Wan2.2's .pth names, ComfyUI's safetensors
    (model.diffusion_model. prefix)."""
    sd = {k: v.detach().float().contiguous() for k, v in m.state_dict().items()}
    wan = wan_state_dict(m)
    files = {"diffusers": d / "diffusers.safetensors", "wan": d / "wan.pth",
             "comfyui": d / "comfy.safetensors"}
    save_file(sd, str(files["diffusers"]))
    torch.save(wan, str(files["wan"]))
    save_file({"model.diffusion_model." + k: v for k, v in wan.items()}, str(files["comfyui"]))
    return files


@pytest.mark.parametrize("t_first", [0.0, 250.0], ids=["clean-first-frame", "other-first-t"])
def test_ti2v_forward_per_token_timesteps(td_cli, tmp_path, seed, t_first):
    gen = torch.Generator().manual_seed(seed)
    m = ti2v_dit(gen)
    x = torch.randn(48, 3, 4, 6, generator=gen).numpy()
    ctx = torch.randn(7, 24, generator=gen).numpy()
    t = float(torch.rand(1, generator=gen)) * 500 + 500
    ref = reference_first(m, x, t, t_first, ctx)
    # the first frame's timestep must matter, or the test proves nothing
    assert rel_l2(reference(m, x, t, ctx), ref) > 1e-3
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "c.npy", ctx)
    for layout, path in save_ti2v_layouts(m, tmp_path).items():
        out = tmp_path / f"v_{layout}.npy"
        run_td(td_cli, "dit-forward", "--dit", path, "--latents", tmp_path / "x.npy", "--t", repr(t),
               "--t-first", repr(t_first), "--context", tmp_path / "c.npy", "--heads", 2, "--out", out)
        err = rel_l2(np.load(out), ref)
        print(f"TI2V {layout}, t {t:.1f}, first frame {t_first}: rel L2 {err:.3g}")
        assert err < 1e-5, layout


def test_ti2v_forward_one_latent_frame(td_cli, tmp_path, seed):
    """A clip of one latent frame: every token is the first frame's."""
    gen = torch.Generator().manual_seed(seed)
    m = ti2v_dit(gen)
    x = torch.randn(48, 1, 4, 4, generator=gen).numpy()
    ctx = torch.randn(5, 24, generator=gen).numpy()
    ref = reference_first(m, x, 700.0, 0.0, ctx)
    save_file({k: v.detach().float().contiguous() for k, v in m.state_dict().items()},
              str(tmp_path / "d.safetensors"))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "c.npy", ctx)
    run_td(td_cli, "dit-forward", "--dit", tmp_path / "d.safetensors", "--latents", tmp_path / "x.npy",
           "--t", 700, "--t-first", 0, "--context", tmp_path / "c.npy", "--heads", 2, "--out", tmp_path / "v.npy")
    assert rel_l2(np.load(tmp_path / "v.npy"), ref) < 1e-5
