"""FastVideo's FastWan checkpoints (DMD few-step distillations of Wan):
tiny random model sets laid out as the Hugging Face repositories
FastVideo/FastWan2.1-T2V-1.3B-Diffusers and
FastVideo/FastWan2.2-TI2V-5B-FullAttn-Diffusers are (model_index.json naming
WanDMDPipeline, transformer/, vae/, text_encoder/, tokenizer/, scheduler/),
run by `turbodiff generate --model DIR` with the sampler left to the engine,
against a DMD loop written here from FastVideo's published algorithm over
diffusers' WanTransformer3DModel and AutoencoderKLWan, in f64:

  FastVideo fastvideo/pipelines/stages/denoising.py, DmdDenoisingStage:
    timesteps = pipeline_config.dmd_denoising_steps     ([1000, 757, 522],
                fastvideo/configs/pipelines/wan.py, both FastWan configs)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=8.0)
    latents = noise; for each t: pred = transformer(latents, t) (no CFG);
      x0 = latents - sigma(t) pred              (models/utils.py,
                                                 pred_noise_to_pred_video)
      latents = (1 - sigma(t_next)) x0 + sigma(t_next) randn   (add_noise)
      or x0 after the last t
  sigma(t): the scheduler's training table (k / 1000 for k = 1000..1,
    shifted s' = 8 s / (1 + 7 s) in f32) at the timestep nearest t.

Noises are the engine's seeded Philox streams (noise_ref.py): number 0 the
initial latents, number i + 1 the one drawn after step i.
"""
import json
import shutil

import numpy as np
import pytest
import torch
import transformers
from diffusers.pipelines.wan.pipeline_wan import prompt_clean
from safetensors.torch import load_file, save_file

import vae_ref
import vae22_ref
from conftest import rel_l2, run_td
from dit_ref import reference as dit_forward, tiny_model
from noise_ref import philox_noise
from test_ti2v import PROMPT, TOKENIZER
from umt5_ref import reference as umt5_encode, save as save_umt5, tiny_model as tiny_umt5

FASTWAN_STEPS = [1000, 757, 522]


def fastvideo_table(shift=8.0):
    """FlowMatchEulerDiscreteScheduler.__init__'s sigmas and timesteps, f32."""
    t = torch.from_numpy(np.linspace(1, 1000, 1000, dtype=np.float32)[::-1].copy())
    s = t / 1000
    s = shift * s / (1 + (shift - 1) * s)
    return s, s * 1000


def fastvideo_sigma(table, t):
    sigmas, timesteps = table
    return float(sigmas[torch.argmin((timesteps.double() - t).abs())])


def dmd_reference(dit, ctx, shape, seed, steps):
    """FastVideo's DMD loop in f64 over the diffusers transformer."""
    table = fastvideo_table()
    n = int(np.prod(shape))
    x = philox_noise(seed, 0, n).reshape(shape).astype(np.float64)
    for i, t in enumerate(steps):
        v = dit_forward(dit, x, float(t), ctx)
        x0 = x - fastvideo_sigma(table, t) * v
        if i + 1 < len(steps):
            s = fastvideo_sigma(table, steps[i + 1])
            x = (1 - s) * x0 + s * philox_noise(seed, i + 1, n).reshape(shape)
        else:
            x = x0
    return x.astype(np.float32)


def write_fastwan(d, dit, t5, vae, ti2v, vsa_gates):
    """The repository's layout and manifests (model_index.json lists its
    components as diffusers does; FastVideo routes on _class_name); with
    vsa_gates, the transformer also holds the gates of FastVideo's Video
    Sparse Attention blocks, as a sparse-distilled FastWan2.1 may."""
    index = {"_class_name": "WanDMDPipeline", "_diffusers_version": "0.33.0.dev0",
             "scheduler": ["diffusers", "UniPCMultistepScheduler"],
             "text_encoder": ["transformers", "UMT5EncoderModel"],
             "tokenizer": ["transformers", "T5TokenizerFast"],
             "transformer": ["diffusers", "WanTransformer3DModel"],
             "vae": ["diffusers", "AutoencoderKLWan"]}
    (d / "model_index.json").write_text(json.dumps(index, indent=2))
    dit.save_pretrained(d / "transformer", safe_serialization=True)
    if vsa_gates:
        # FastVideo's VSA blocks add to_gate_compress (a dim x dim linear)
        st = d / "transformer" / "diffusion_pytorch_model.safetensors"
        sd = load_file(str(st))
        dim = sd["blocks.0.attn1.to_q.weight"].shape[0]
        gen = torch.Generator().manual_seed(len(sd))
        for i in range(dit.config.num_layers):
            sd[f"blocks.{i}.to_gate_compress.weight"] = torch.randn(dim, dim, generator=gen)
            sd[f"blocks.{i}.to_gate_compress.bias"] = torch.randn(dim, generator=gen)
        save_file(sd, str(st))
    (d / "vae").mkdir()
    if ti2v:
        vae22_ref.save_all(vae, d / "vae" / "diffusion_pytorch_model.safetensors", d / "x.pth", d / "x.safetensors")
    else:
        vae_ref.save_both(vae, d / "vae" / "diffusion_pytorch_model.safetensors", d / "x.pth")
    (d / "x.pth").unlink()
    if ti2v:
        (d / "x.safetensors").unlink()
    vae.save_config(d / "vae")
    (d / "text_encoder").mkdir()
    save_umt5(t5, d / "text_encoder" / "model.safetensors", "hf")
    (d / "tokenizer").mkdir()
    shutil.copy(TOKENIZER, d / "tokenizer" / "tokenizer.json")
    (d / "scheduler").mkdir()
    (d / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "UniPCMultistepScheduler", "flow_shift": 3.0, "num_train_timesteps": 1000,
         "prediction_type": "flow_prediction", "use_flow_sigmas": True}))


@pytest.mark.parametrize("kind", ["wan2.1-t2v", "wan2.2-ti2v"])
@pytest.mark.parametrize("steps", [None, "1000,850,600,300"], ids=["published", "given"])
def test_fastwan_dmd_matches_fastvideo_loop(td_cli, tmp_path, seed, kind, steps):
    ti2v = kind == "wan2.2-ti2v"
    gen = torch.Generator().manual_seed(seed)
    ch, factor = (48, 16) if ti2v else (16, 8)
    W, H, F = (64, 32, 5) if ti2v else (32, 16, 7)
    dit = tiny_model(gen, heads=1, head_dim=128, in_ch=ch, out_ch=ch, layers=2, ffn=64, text_dim=64)
    t5 = tiny_umt5(np.random.default_rng(seed), layers=2, d_model=64, vocab=1500)
    vae = vae22_ref.tiny_vae22(seed) if ti2v else vae_ref.tiny_vae(seed)
    model = tmp_path / "FastWan"
    model.mkdir()
    write_fastwan(model, dit, t5, vae, ti2v, vsa_gates=not ti2v)
    args = ["--timesteps", steps] if steps else []
    p = run_td(td_cli, "generate", "--model", model, "--prompt", PROMPT, "--size", f"{W}x{H}",
               "--frames", F, "--seed", seed, "--attention", "full", "--save-frames", tmp_path / "f.npy",
               *args)
    ours = np.load(tmp_path / "f.npy")

    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER))
    ctx = umt5_encode(t5, tok(prompt_clean(PROMPT)).input_ids)
    schedule = [int(t) for t in steps.split(",")] if steps else FASTWAN_STEPS
    lat = dmd_reference(dit, ctx, (ch, 1 + (F + 2) // 4, H // factor, W // factor), seed, schedule)
    video = vae_ref.decode(vae, lat, dtype=torch.float64)
    ref = ((np.clip(video, -1, 1) + 1) / 2).transpose(1, 2, 3, 0)[:F]
    err = rel_l2(ours, ref)
    print(f"FastWan {kind} DMD {schedule} vs FastVideo's loop: rel L2 {err:.3g}")
    assert ours.shape == (F, H, W, 3)
    assert err < 1e-4, p.stderr
    # a DiT with VSA gates runs dense and says so; the FullAttn one says nothing
    assert ("Video Sparse Attention" in p.stderr) == (not ti2v), p.stderr

    # the sampler matters: rCM on the same directory gives another clip
    run_td(td_cli, "generate", "--model", model, "--prompt", PROMPT, "--size", f"{W}x{H}", "--frames", F,
           "--seed", seed, "--attention", "full", "--sampler", "rcm", "--save-frames", tmp_path / "r.npy")
    assert rel_l2(np.load(tmp_path / "r.npy"), ref) > 1e-2


def test_fastwan_bad_timesteps_refused(td_cli, tmp_path):
    for bad, why in (("1000,757,757", "must decrease"), ("1000,0", "from 1 to 1000"),
                     ("1000 757", "separated by commas")):
        p = run_td(td_cli, "generate", "--prompt", "x", "--sampler", "dmd", "--timesteps", bad,
                   "--save-frames", tmp_path / "f.npy", check=False)
        assert p.returncode != 0 and f"timesteps '{bad}'" in p.stderr and why in p.stderr, p.stderr
