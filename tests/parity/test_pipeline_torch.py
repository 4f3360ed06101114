"""The whole pipeline against the same composition written in PyTorch.

`turbodiff generate` (the public API: td_engine_open + td_job_run) on fresh
tiny random models in the real file formats, against:
  transformers' tokenizer (tokenizer.json) -> diffusers' prompt_clean ->
  transformers' UMT5EncoderModel (zero rows to 512) -> the rCM loop of
  thu-ml/TurboDiffusion's inference scripts over diffusers'
  WanTransformer3DModel (both experts of an A14B pair for image-to-video) ->
  diffusers' AutoencoderKLWan decode,
and for image-to-video: torchvision's Resize/Normalize of the start image,
AutoencoderKLWan encode of the image followed by zero frames, the 4-channel
first-frame mask, y = [mask, latents] after the 16 noisy channels.
The noises are the engine's seeded Philox noises (noise_ref.py). The
references run in f64, so the bar measures our f32 error alone.
"""
import math
import pathlib

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
import transformers
from diffusers.pipelines.wan.pipeline_wan import prompt_clean
from PIL import Image

import vae_ref
from conftest import rel_l2, run_td
from dit_ref import reference as dit_forward, tiny_model, wan_state_dict
from noise_ref import philox_noise
from umt5_ref import reference as umt5_encode, save as save_umt5, tiny_model as tiny_umt5
TOKENIZER = pathlib.Path(__file__).resolve().parents[1] / "data" / "text" / "tokenizer.json"
PROMPT = "  a red circle &amp; a blue\tsquare   move right  "


def text_context(t5, prompt):
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER))
    return umt5_encode(t5, tok(prompt_clean(prompt)).input_ids)


def rcm(experts, ctx, y, shape, seed, steps, sigma_max, boundary=0.9):
    """TurboDiffusion's loop: f64 state, stochastic steps, the low-noise
    expert once t < boundary; noise i is the engine's stream i."""
    n = int(np.prod(shape))
    noise = [torch.from_numpy(philox_noise(seed, i, n).reshape(shape)).double() for i in range(steps + 1)]
    ts = torch.tensor([math.atan(sigma_max), *[1.5, 1.4, 1.0][: steps - 1], 0], dtype=torch.float64)
    ts = torch.sin(ts) / (torch.cos(ts) + torch.sin(ts))
    x = noise[0] * ts[0]
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        net = experts[1] if len(experts) > 1 and t < boundary else experts[0]
        inp = x.numpy() if y is None else np.concatenate([x.numpy(), y])
        v = torch.from_numpy(dit_forward(net, inp, float(t) * 1000, ctx))
        x = (1 - t_next) * (x - t * v) + t_next * (noise[i + 1] if t_next > 0 else 0)
    return x.numpy().astype(np.float32)


def frames_of(vae, latents, count):
    """diffusers' decode in f64, as the frames [F, H, W, 3] in [0, 1] the
    engine delivers."""
    video = vae_ref.decode(vae, latents, dtype=torch.float64)
    return ((np.clip(video, -1, 1) + 1) / 2).transpose(1, 2, 3, 0)[:count]


def model_set(tmp_path, seed, in_ch=16, experts=1):
    gen = torch.Generator().manual_seed(seed)
    dits = []
    for e in range(experts):
        m = tiny_model(gen, heads=1, head_dim=128, in_ch=in_ch, layers=2, ffn=64, text_dim=64)
        torch.save({f"net.{k}": v for k, v in wan_state_dict(m).items()}, tmp_path / f"dit{e}.pth")
        dits.append(m)
    t5 = tiny_umt5(np.random.default_rng(seed), layers=2, d_model=64, vocab=1500)
    save_umt5(t5, tmp_path / "t5.safetensors", "hf")
    vae = vae_ref.tiny_vae(seed)
    vae_ref.save_both(vae, tmp_path / "vae.safetensors", tmp_path / "vae.pth")
    args = ["--dit", tmp_path / "dit0.pth", "--vae", tmp_path / "vae.pth",
            "--t5", tmp_path / "t5.safetensors", "--tokenizer", TOKENIZER]
    if experts > 1:
        args += ["--dit-low", tmp_path / "dit1.pth"]
    return dits, t5, vae, args


def test_t2v_pipeline_matches_torch(td_cli, tmp_path, seed):
    dits, t5, vae, files = model_set(tmp_path, seed)
    W, H, F = 32, 16, 7
    run_td(td_cli, "generate", *files, "--prompt", PROMPT, "--size", f"{W}x{H}", "--frames", F,
           "--steps", 4, "--seed", seed, "--attention", "full", "--save-frames", tmp_path / "f.npy")
    ours = np.load(tmp_path / "f.npy")

    ctx = text_context(t5, PROMPT)
    lat = rcm(dits, ctx, None, (16, 1 + (F + 2) // 4, H // 8, W // 8), seed, 4, 80.0)
    ref = frames_of(vae, lat, F)
    err = rel_l2(ours, ref)
    print(f"t2v pipeline vs torch composition: rel L2 {err:.3g}")
    assert ours.shape == (F, H, W, 3)
    assert err < 1e-4


def i2v_condition(vae, image, W, H, F):
    tf = T.Compose([T.ToImage(), T.Resize(size=(H, W), antialias=True),
                    T.ToDtype(torch.float32, scale=True), T.Normalize([0.5] * 3, [0.5] * 3)])
    img = tf(image).numpy()
    frames = 1 + 4 * ((F + 2) // 4)
    clip = np.zeros((3, frames, H, W), np.float32)
    clip[:, 0] = img
    lat = vae_ref.encode(vae, clip, dtype=torch.float64)
    mask = np.zeros((4, *lat.shape[1:]), np.float32)
    mask[:, 0] = 1
    return np.concatenate([mask, lat])


@pytest.mark.parametrize("image_size", [(32, 16), (45, 29)], ids=["same-size", "resized"])
def test_i2v_pipeline_matches_torch(td_cli, tmp_path, seed, image_size):
    dits, t5, vae, files = model_set(tmp_path, seed, in_ch=36, experts=2)
    W, H, F = 32, 16, 6
    rng = np.random.default_rng(seed)
    image = Image.fromarray((rng.random((image_size[1], image_size[0], 3)) * 255).astype(np.uint8))
    image.save(tmp_path / "start.png")
    run_td(td_cli, "generate", *files, "--prompt", PROMPT, "--image", tmp_path / "start.png",
           "--size", f"{W}x{H}", "--frames", F, "--steps", 4, "--seed", seed, "--attention", "full",
           "--save-frames", tmp_path / "f.npy")
    ours = np.load(tmp_path / "f.npy")

    ctx = text_context(t5, PROMPT)
    y = i2v_condition(vae, image, W, H, F)
    # sigma_max 200 (the i2v default): t = 0.995, 0.934 on the high-noise
    # expert, 0.855, 0.609 on the low-noise one
    lat = rcm(dits, ctx, y, (16, *y.shape[1:]), seed, 4, 200.0)
    ref = frames_of(vae, lat, F)
    err = rel_l2(ours, ref)
    print(f"i2v pipeline ({image_size[0]}x{image_size[1]} image) vs torch composition: rel L2 {err:.3g}")
    assert ours.shape == (F, H, W, 3)
    assert err < 1e-4


def test_prepare_image_matches_torchvision(td_cli, tmp_path, seed):
    """The start image as i2v sees it: torchvision's antialiased bilinear
    Resize of the uint8 image, ToDtype, Normalize; exact to f32 rounding."""
    rng = np.random.default_rng(seed)
    for _ in range(6):
        sh, sw, dh, dw = (int(v) for v in rng.integers(5, 100, 4))
        Image.fromarray((rng.random((sh, sw, 3)) * 255).astype(np.uint8)).save(tmp_path / "i.png")
        run_td(td_cli, "prepare-image", "--image", tmp_path / "i.png", "--size", f"{dw}x{dh}",
               "--out", tmp_path / "o.npy")
        tf = T.Compose([T.ToImage(), T.Resize(size=(dh, dw), antialias=True),
                        T.ToDtype(torch.float32, scale=True), T.Normalize([0.5] * 3, [0.5] * 3)])
        ref = tf(Image.open(tmp_path / "i.png").convert("RGB")).numpy()
        worst = np.abs(np.load(tmp_path / "o.npy") - ref).max()
        print(f"{sw}x{sh} -> {dw}x{dh}: worst {worst:.3g}")
        assert worst < 1e-6


@pytest.mark.parametrize("img,target,expect", [
    ((1920, 1080), (832, 480), (848, 480)),   # 16:9 photo at the 480p area
    ((480, 832), (832, 480), (480, 832)),     # portrait keeps its orientation
    ((1023, 517), (64, 48), (80, 32)),
    ((1024, 400), (64, 64), (96, 32)),        # ideal height 40: 2.5 rounds to even
    ((1000, 1000), (1280, 720), (960, 960)),
])
def test_adaptive_resolution_as_upstream(td_cli, tmp_path, img, target, expect):
    """wan2.2_i2v_infer.py: ideal sides sqrt(area / aspect), sqrt(area * aspect),
    rounded (half to even) to multiples of 16."""
    aspect = img[1] / img[0]
    area = target[0] * target[1]
    upstream = (round(np.sqrt(area / aspect) / 16) * 16, round(np.sqrt(area * aspect) / 16) * 16)
    assert upstream == expect
    Image.new("RGB", img, (200, 30, 60)).save(tmp_path / "i.png")
    run_td(td_cli, "prepare-image", "--image", tmp_path / "i.png", "--size", f"{target[0]}x{target[1]}",
           "--adaptive", "--out", tmp_path / "o.npy")
    assert np.load(tmp_path / "o.npy").shape == (3, expect[1], expect[0])


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1"])
def test_png_modes_decode_as_pil(td_cli, tmp_path, seed, mode):
    """Start images of every mode PIL writes decode to the pixels of PIL's
    convert("RGB"), which is what upstream feeds its transforms."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray((rng.random((21, 34, 3)) * 255).astype(np.uint8))
    img = img.convert(mode) if mode != "P" else img.quantize(colors=37)
    img.save(tmp_path / "m.png", optimize=bool(seed % 2))
    run_td(td_cli, "prepare-image", "--image", tmp_path / "m.png", "--size", "34x21",
           "--out", tmp_path / "o.npy")
    ours = np.rint((np.load(tmp_path / "o.npy") + 1) * 127.5).astype(np.uint8).transpose(1, 2, 0)
    assert np.array_equal(ours, np.asarray(Image.open(tmp_path / "m.png").convert("RGB")))
