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


# --- the whole pipeline against diffusers' WanPipeline (TI2V path) -----------
import pathlib

import transformers
from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline
from PIL import Image

import vae22_ref
from noise_ref import philox_noise
from umt5_ref import save as save_umt5, tiny_model as tiny_umt5

TOKENIZER = pathlib.Path(__file__).resolve().parents[1] / "data" / "text" / "tokenizer.json"
PROMPT = "  a red circle &amp; a blue\tsquare   move right  "
# wan/configs/shared_config.py: sample_neg_prompt, the engine's default
WAN_NEG = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
           "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，"
           "毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")
W, H, F, STEPS = 64, 32, 5, 3


def ti2v_set(tmp_path, seed):
    """A tiny TI2V-5B model set in the real layouts: the DiT in Wan2.2's
    names (.safetensors), the Wan2.2 VAE as Wan2.2_VAE.pth, umT5 in HF names."""
    gen = torch.Generator().manual_seed(seed)
    dit = tiny_model(gen, 1, 128, in_ch=48, out_ch=48, layers=2, ffn=64, text_dim=64)
    save_file(wan_state_dict(dit), str(tmp_path / "dit.safetensors"))
    t5 = tiny_umt5(np.random.default_rng(seed), layers=2, d_model=64, vocab=1500)
    save_umt5(t5, tmp_path / "t5.safetensors", "hf")
    vae = vae22_ref.tiny_vae22(seed)
    vae22_ref.save_all(vae, tmp_path / "vae.safetensors", tmp_path / "vae.pth", tmp_path / "vae_c.safetensors")
    args = ["--dit", tmp_path / "dit.safetensors", "--vae", tmp_path / "vae.pth",
            "--t5", tmp_path / "t5.safetensors", "--tokenizer", TOKENIZER]
    return dit, t5, vae, args


def diffusers_parts(dit, t5, vae):
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER))
    tok.pad_token = tok.convert_ids_to_tokens(0)
    sched = UniPCMultistepScheduler(num_train_timesteps=1000, solver_order=2, prediction_type="flow_prediction",
                                    use_flow_sigmas=True, flow_shift=5.0, solver_type="bh2", predict_x0=True,
                                    lower_order_final=True, final_sigmas_type="zero")
    return dict(tokenizer=tok, text_encoder=t5.double(), vae=vae.double(), transformer=dit.double(),
                scheduler=sched)


def engine_noise(seed):
    shape = (1, 48, 1 + (F - 1) // 4, H // 16, W // 16)
    return torch.from_numpy(philox_noise(seed, 0, int(np.prod(shape))).reshape(shape))


def test_ti2v_t2v_pipeline_matches_wanpipeline(td_cli, tmp_path, seed):
    dit, t5, vae, files = ti2v_set(tmp_path, seed)
    run_td(td_cli, "generate", *files, "--prompt", PROMPT, "--size", f"{W}x{H}", "--frames", F,
           "--flow-steps", STEPS, "--seed", seed, "--attention", "full", "--save-frames", tmp_path / "f.npy")
    ours = np.load(tmp_path / "f.npy")
    pipe = WanPipeline(**diffusers_parts(dit, t5, vae), expand_timesteps=True)
    with torch.no_grad():
        ref = pipe(prompt=PROMPT, negative_prompt=WAN_NEG, height=H, width=W, num_frames=F,
                   num_inference_steps=STEPS, guidance_scale=5.0, latents=engine_noise(seed),
                   output_type="np").frames[0]
    err = rel_l2(ours, ref)
    print(f"TI2V text-to-video vs WanPipeline: rel L2 {err:.3g}")
    assert ours.shape == (F, H, W, 3)
    assert err < 1e-4


def test_ti2v_i2v_pipeline_matches_wanpipeline(td_cli, tmp_path, seed, monkeypatch):
    # the i2v module's prompt_clean calls ftfy unconditionally; pipeline_wan's
    # is the same cleaning with ftfy optional (not installed here)
    import diffusers.pipelines.wan.pipeline_wan as pw
    import diffusers.pipelines.wan.pipeline_wan_i2v as pwi
    monkeypatch.setattr(pwi, "prompt_clean", pw.prompt_clean)
    dit, t5, vae, files = ti2v_set(tmp_path, seed)
    rng = np.random.default_rng(seed)
    image = Image.fromarray((rng.random((H, W, 3)) * 255).astype(np.uint8))
    image.save(tmp_path / "start.png")
    run_td(td_cli, "generate", *files, "--prompt", PROMPT, "--image", tmp_path / "start.png",
           "--size", f"{W}x{H}", "--frames", F, "--flow-steps", STEPS, "--seed", seed,
           "--attention", "full", "--save-frames", tmp_path / "f.npy")
    ours = np.load(tmp_path / "f.npy")
    pipe = WanImageToVideoPipeline(**diffusers_parts(dit, t5, vae), image_encoder=None, image_processor=None,
                                   expand_timesteps=True)
    with torch.no_grad():
        ref = pipe(image=image, prompt=PROMPT, negative_prompt=WAN_NEG, height=H, width=W, num_frames=F,
                   num_inference_steps=STEPS, guidance_scale=5.0, latents=engine_noise(seed),
                   output_type="np").frames[0]
    err = rel_l2(ours, ref)
    print(f"TI2V image-to-video vs WanImageToVideoPipeline: rel L2 {err:.3g}")
    assert ours.shape == (F, H, W, 3)
    assert err < 1e-4
