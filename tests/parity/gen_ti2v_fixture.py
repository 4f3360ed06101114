"""Writes tests/data/pipeline/ti2v/: a tiny random Wan2.2 TI2V-5B model set
in the real formats (a 48-channel DiT in Wan2.2's names, bf16 safetensors;
through turbodiff.json the committed Wan2.2 VAE, umT5 and tokenizer
fixtures), and the clips diffusers makes from it, which the C test
tests/unit/test_pipeline_ti2v.c compares td_job_run with:
  ref_t2v.npy  WanPipeline(expand_timesteps=True), 3 UniPC steps, CFG 5 with
               Wan's negative prompt, the engine's noise for seed 11;
  ref_i2v.npy  WanImageToVideoPipeline(expand_timesteps=True), the same, from
               image.npy (a 64x32 RGB24 start image, the clip's size).
Frames [5, 32, 64, 3] f32 in [0, 1]; references in f64.

    .venv/bin/python tests/parity/gen_ti2v_fixture.py
"""
import json
import pathlib

import numpy as np
import torch
from diffusers import AutoencoderKLWan, WanImageToVideoPipeline, WanPipeline
from PIL import Image
from safetensors.torch import load_file, save_file

import diffusers.pipelines.wan.pipeline_wan as pw
import diffusers.pipelines.wan.pipeline_wan_i2v as pwi
import vae22_ref
from dit_ref import tiny_model, wan_state_dict
from test_ti2v import F, H, PROMPT, STEPS, W, WAN_NEG, diffusers_parts
from noise_ref import philox_noise
from gen_vae22_fixtures import CFG as VAE_CFG
from umt5_ref import tiny_model as tiny_umt5

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
OUT = DATA / "pipeline" / "ti2v"
SEED = 11


def bf16(m):
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return m


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(2026)
    dit = bf16(tiny_model(gen, 1, 128, in_ch=48, out_ch=48, layers=1, ffn=64, text_dim=64))
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in wan_state_dict(dit).items()},
              str(OUT / "dit.safetensors"))
    manifest = {"name": "tiny random Wan2.2 TI2V-5B set (test fixture: draws noise)",
                "dit": "dit.safetensors", "vae": "../../vae22/vae22_wan.pth",
                "t5": "../umt5.safetensors", "tokenizer": "../../text/tokenizer.json",
                "size": f"{W}x{H}", "frames": F}
    (OUT / "turbodiff.json").write_text(json.dumps(manifest, indent=2) + "\n")

    # the committed encoder (bf16 file) and VAE, loaded into diffusers' models
    t5 = tiny_umt5(np.random.default_rng(0), layers=2, d_model=64, vocab=1500)
    sd = {k: v.float() for k, v in load_file(str(DATA / "pipeline" / "umt5.safetensors")).items()}
    sd["encoder.embed_tokens.weight"] = sd["shared.weight"]
    t5.load_state_dict(sd)
    vae = vae22_ref.tiny_vae22(0, **VAE_CFG)
    vae.load_state_dict(vae22_ref.from_wan22_keys(torch.load(DATA / "vae22" / "vae22_wan.pth")))

    shape = (1, 48, 1 + (F - 1) // 4, H // 16, W // 16)
    noise = torch.from_numpy(philox_noise(SEED, 0, int(np.prod(shape))).reshape(shape))
    args = dict(prompt=PROMPT, negative_prompt=WAN_NEG, height=H, width=W, num_frames=F,
                num_inference_steps=STEPS, guidance_scale=5.0, output_type="np")
    with torch.no_grad():
        ref = WanPipeline(**diffusers_parts(dit, t5, vae), expand_timesteps=True)(latents=noise, **args)
    np.save(OUT / "ref_t2v.npy", ref.frames[0].astype(np.float32))

    image = (np.random.default_rng(SEED).random((H, W, 3)) * 255).astype(np.uint8)
    np.save(OUT / "image.npy", image)
    pwi.prompt_clean = pw.prompt_clean   # the i2v module needs ftfy otherwise
    with torch.no_grad():
        ref = WanImageToVideoPipeline(**diffusers_parts(dit, t5, vae), image_encoder=None, image_processor=None,
                                      expand_timesteps=True)(image=Image.fromarray(image), latents=noise, **args)
    np.save(OUT / "ref_i2v.npy", ref.frames[0].astype(np.float32))


if __name__ == "__main__":
    main()
