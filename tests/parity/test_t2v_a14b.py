"""Wan2.2 T2V A14B: a tiny random high/low-noise expert pair through the
whole pipeline (`turbodiff generate`, the public API) against diffusers'
WanPipeline with transformer_2 and boundary_ratio 0.875 (Wan2.2's
wan_t2v_A14B.py: shift 12, guidance 4.0 high / 3.0 low, Wan's negative
prompt), on the same weights and the engine's noise, run in f64. The pair
is found by the engine's default sampler choice (flow matching with CFG:
TurboDiffusion publishes no distilled T2V A14B) and default boundary, in
each layout users download: diffusers (transformer/, transformer_2/),
Wan's (high_noise_model/, low_noise_model/), ComfyUI's single files and
TurboDiffusion-style .pth files given explicitly."""
import shutil

import numpy as np
import pytest
import torch
import transformers
from diffusers import UniPCMultistepScheduler, WanPipeline
from safetensors.torch import save_file

import vae_ref
from conftest import rel_l2, run_td
from dit_ref import tiny_model, wan_state_dict
from noise_ref import philox_noise
from test_ti2v import PROMPT, TOKENIZER, WAN_NEG
from umt5_ref import save as save_umt5, tiny_model as tiny_umt5

# shift 12, 5 steps: timesteps 999, 979, 947, 889 on the high-noise expert, 750 on the
# low-noise one; 889 tells the boundary 0.875 from I2V's 0.9
W, H, F, STEPS = 32, 16, 5, 5


def write_layout(layout, d, experts, t5, vae):
    """The model set in d as `layout` stores it; returns the CLI's file args."""
    high, low = (wan_state_dict(m) for m in experts)
    if layout == "turbodiffusion":
        torch.save({"net." + k: v for k, v in high.items()}, d / "high.pth")
        torch.save({"net." + k: v for k, v in low.items()}, d / "low.pth")
        save_umt5(t5, d / "t5.safetensors", "hf")
        vae_ref.save_both(vae, d / "vae.safetensors", d / "vae.pth")
        return ["--dit", d / "high.pth", "--dit-low", d / "low.pth", "--vae", d / "vae.pth",
                "--t5", d / "t5.safetensors", "--tokenizer", TOKENIZER]
    if layout == "diffusers":
        for sub, m in (("transformer", experts[0]), ("transformer_2", experts[1])):
            (d / sub).mkdir()
            save_file({k: v.detach().float().contiguous() for k, v in m.state_dict().items()},
                      str(d / sub / "diffusion_pytorch_model.safetensors"))
        for sub in ("vae", "text_encoder", "tokenizer"):
            (d / sub).mkdir()
        vae_ref.save_both(vae, d / "vae" / "diffusion_pytorch_model.safetensors", d / "unused_vae.pth")
        save_umt5(t5, d / "text_encoder" / "model.safetensors", "hf")
        shutil.copy(TOKENIZER, d / "tokenizer" / "tokenizer.json")
    elif layout == "wan":
        for sub, sd in (("high_noise_model", high), ("low_noise_model", low)):
            (d / sub).mkdir()
            save_file(sd, str(d / sub / "diffusion_pytorch_model.safetensors"))
        vae_ref.save_both(vae, d / "unused_vae.safetensors", d / "Wan2.1_VAE.pth")
        save_umt5(t5, d / "models_t5_umt5-xxl-enc-bf16.pth", "wan")
        (d / "google" / "umt5-xxl").mkdir(parents=True)
        shutil.copy(TOKENIZER, d / "google" / "umt5-xxl" / "tokenizer.json")
    else:   # comfyui
        for name, sd in (("high", high), ("low", low)):
            save_file({"model.diffusion_model." + k: v for k, v in sd.items()},
                      str(d / f"wan2.2_t2v_{name}_noise_14B_fp16.safetensors"))
        vae_ref.save_both(vae, d / "unused_vae.safetensors", d / "unused_vae.pth", d / "wan_2.1_vae.safetensors")
        save_umt5(t5, d / "umt5_xxl_fp16.safetensors", "hf")
        shutil.copy(TOKENIZER, d / "tokenizer.json")
    return ["--model", d]


@pytest.mark.parametrize("layout", ["diffusers", "wan", "comfyui", "turbodiffusion"])
def test_t2v_a14b_pair_matches_wanpipeline(td_cli, tmp_path, seed, layout):
    gen = torch.Generator().manual_seed(seed)
    experts = [tiny_model(gen, heads=1, head_dim=128, layers=2, ffn=64, text_dim=64) for _ in range(2)]
    t5 = tiny_umt5(np.random.default_rng(seed), layers=2, d_model=64, vocab=1500)
    vae = vae_ref.tiny_vae(seed)
    files = write_layout(layout, tmp_path, experts, t5, vae)
    run_td(td_cli, "generate", *files, "--prompt", PROMPT, "--size", f"{W}x{H}", "--frames", F,
           "--flow-steps", STEPS, "--seed", seed, "--attention", "full", "--save-frames", tmp_path / "f.npy")
    ours = np.load(tmp_path / "f.npy")

    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER))
    tok.pad_token = tok.convert_ids_to_tokens(0)
    sched = UniPCMultistepScheduler(num_train_timesteps=1000, solver_order=2, prediction_type="flow_prediction",
                                    use_flow_sigmas=True, flow_shift=12.0, solver_type="bh2", predict_x0=True,
                                    lower_order_final=True, final_sigmas_type="zero")
    pipe = WanPipeline(tokenizer=tok, text_encoder=t5.double(), vae=vae.double(), scheduler=sched,
                       transformer=experts[0].double(), transformer_2=experts[1].double(), boundary_ratio=0.875)
    shape = (1, 16, 1 + (F - 1) // 4, H // 8, W // 8)
    noise = torch.from_numpy(philox_noise(seed, 0, int(np.prod(shape))).reshape(shape))
    with torch.no_grad():
        ref = pipe(prompt=PROMPT, negative_prompt=WAN_NEG, height=H, width=W, num_frames=F,
                   num_inference_steps=STEPS, guidance_scale=4.0, guidance_scale_2=3.0, latents=noise,
                   output_type="np").frames[0]
    err = rel_l2(ours, ref)
    print(f"T2V A14B pair ({layout} layout) vs WanPipeline: rel L2 {err:.3g}")
    assert ours.shape == (F, H, W, 3)
    assert err < 1e-4
