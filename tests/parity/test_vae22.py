"""Wan2.2 VAE (z 48, 4x16x16, 2x2 pixel patch, residual down / up blocks):
our decode/encode vs diffusers' AutoencoderKLWan in Wan2.2's configuration
on fresh tiny random models, loaded from diffusers safetensors, from Wan's
Wan2.2_VAE.pth names and from those names in safetensors (ComfyUI's
wan2.2_vae.safetensors), for 1, 5, 9 and 13 frames (several causal chunks)
at an odd latent size (3x5); the streaming .y4m path, tiling, a
decoder-only file and the errors a 2.2 model gives."""
import numpy as np
import pytest

from conftest import rel_l2, run_td
from vae_ref import decode, decode_tiled, encode, rand
from vae22_ref import save_all, tiny_vae22

FRAMES = [1, 5, 9, 13]
LAT_H, LAT_W = 3, 5
LAYOUTS = ["vae.safetensors", "Wan2.2_VAE.pth", "wan2.2_vae.safetensors"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import os
    import time
    seed = int(os.environ.get("TD_TEST_SEED", time.time_ns() % (2**31)))
    print(f"test_vae22 models: seed {seed} (replay with TD_TEST_SEED={seed})")
    d = tmp_path_factory.mktemp("vae22")
    vae = tiny_vae22(seed)
    save_all(vae, d / LAYOUTS[0], d / LAYOUTS[1], d / LAYOUTS[2])
    return vae, d, seed


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("frames", FRAMES)
def test_decode(td_cli, models, layout, frames, tmp_path):
    vae, d, seed = models
    rng = np.random.default_rng(seed + frames)
    lat = rand(rng, 48, 1 + (frames - 1) // 4, LAT_H, LAT_W)
    np.save(tmp_path / "lat.npy", lat)
    run_td(td_cli, "vae-decode", "--vae", d / layout, "--latents", tmp_path / "lat.npy",
           "--out", tmp_path / "out.npy")
    ours = np.load(tmp_path / "out.npy")
    ref = decode(vae, lat)
    assert ours.shape == (3, frames, 16 * LAT_H, 16 * LAT_W)
    assert np.mean(np.abs(ref) >= 1.0) < 0.5, "reference mostly clamped: test would be weak"
    err = rel_l2(ours, ref)
    print(f"decode {layout} {frames} frames: rel L2 {err:.3g}")
    assert err < 1e-5


@pytest.mark.parametrize("layout", LAYOUTS[:2])
@pytest.mark.parametrize("frames", FRAMES)
def test_encode(td_cli, models, layout, frames, tmp_path):
    vae, d, seed = models
    rng = np.random.default_rng(seed + 100 + frames)
    x = np.clip(rand(rng, 3, frames, 16 * LAT_H, 16 * LAT_W, amp=0.5), -1, 1)
    np.save(tmp_path / "x.npy", x)
    run_td(td_cli, "vae-encode", "--vae", d / layout, "--frames", tmp_path / "x.npy",
           "--out", tmp_path / "lat.npy")
    ours = np.load(tmp_path / "lat.npy")
    ref = encode(vae, x)
    assert ours.shape == (48, 1 + (frames - 1) // 4, LAT_H, LAT_W)
    err = rel_l2(ours, ref)
    print(f"encode {layout} {frames} frames: rel L2 {err:.3g}")
    assert err < 1e-5


def test_streamed_y4m(td_cli, models, tmp_path):
    """.y4m output is written chunk by chunk as the decoder streams (1, then
    4 frames per latent frame); its luma matches diffusers' frames."""
    vae, d, seed = models
    rng = np.random.default_rng(seed + 7)
    lat = rand(rng, 48, 3, 2, 3)
    np.save(tmp_path / "lat.npy", lat)
    run_td(td_cli, "vae-decode", "--vae", d / "Wan2.2_VAE.pth", "--latents", tmp_path / "lat.npy",
           "--out", tmp_path / "out.y4m")
    ref = decode(vae, lat)
    data = (tmp_path / "out.y4m").read_bytes()
    header, rest = data.split(b"\n", 1)
    assert header == b"YUV4MPEG2 W48 H32 F16:1 Ip A1:1 C420jpeg"
    frame = 32 * 48 * 3 // 2
    assert len(rest) == 9 * (6 + frame)
    for f in (0, 4, 8):
        y = np.frombuffer(rest[f * (6 + frame) + 6:][:32 * 48], np.uint8).reshape(32, 48).astype(np.float64)
        rgb = (ref[:, f].astype(np.float64) + 1) * 127.5
        yref = 16 + (65.481 * rgb[0] + 128.553 * rgb[1] + 24.966 * rgb[2]) / 255
        assert np.max(np.abs(y - yref)) <= 0.5 + 1e-3, f"frame {f}"


def test_tiled_within_bound(td_cli, models, tmp_path):
    vae, d, seed = models
    rng = np.random.default_rng(seed + 11)
    lat = rand(rng, 48, 2, 9, 11)
    np.save(tmp_path / "lat.npy", lat)
    run_td(td_cli, "vae-decode", "--vae", d / "vae.safetensors", "--latents", tmp_path / "lat.npy",
           "--out", tmp_path / "tiled.npy", "--tile", 6, "--overlap", 3)
    ref = decode(vae, lat)
    err = rel_l2(np.load(tmp_path / "tiled.npy"), ref)
    err_diffusers = rel_l2(decode_tiled(vae, lat, 96, 48), ref)
    print(f"tiled (6, overlap 3) vs untiled: rel L2 {err:.3g}; diffusers tiled (96, stride 48) {err_diffusers:.3g}")
    # Tiling really happened (err > 0), and its seams cost no more than
    # diffusers' own tiled decode of the same latents with the same tiles
    # (ours measured 0.78-0.83 of theirs over seeds; an absolute bound on a
    # random model's seams was crossed by one seed in CI).
    assert 0 < err <= err_diffusers


def test_errors(td_cli, models, tmp_path):
    vae, d, seed = models
    rng = np.random.default_rng(seed)
    np.save(tmp_path / "lat16.npy", rand(rng, 16, 1, 3, 3))
    p = run_td(td_cli, "vae-decode", "--vae", d / "vae.safetensors", "--latents", tmp_path / "lat16.npy",
               "--out", tmp_path / "o.npy", check=False)
    assert p.returncode != 0 and "latents" in p.stderr and "[48" in p.stderr
    np.save(tmp_path / "x.npy", rand(rng, 3, 1, 24, 32))
    p = run_td(td_cli, "vae-encode", "--vae", d / "Wan2.2_VAE.pth", "--frames", tmp_path / "x.npy",
               "--out", tmp_path / "o.npy", check=False)
    assert p.returncode != 0 and "multiples of 16" in p.stderr


def test_decoder_only_file(td_cli, models, tmp_path):
    from safetensors.torch import save_file
    vae, d, seed = models
    sd = {k: v.contiguous() for k, v in vae.state_dict().items() if not k.startswith(("encoder.", "quant_conv."))}
    save_file(sd, str(tmp_path / "dec.safetensors"))
    rng = np.random.default_rng(seed + 3)
    lat = rand(rng, 48, 2, 2, 3)
    np.save(tmp_path / "lat.npy", lat)
    run_td(td_cli, "vae-decode", "--vae", tmp_path / "dec.safetensors", "--latents", tmp_path / "lat.npy",
           "--out", tmp_path / "out.npy")
    assert rel_l2(np.load(tmp_path / "out.npy"), decode(vae, lat)) < 1e-5
