"""LoRA at load time: our merge (`turbodiff lora-merge`, what the engine
uploads) against diffusers' load_lora_weights + fuse_lora (PEFT's merge) on
a tiny random WanTransformer3DModel, bit for bit in f32; a forward with a
LoRA against diffusers'; kohya / ComfyUI files against diffusers' own
conversion of them. Fresh random models and LoRAs every run."""
import numpy as np
import pytest
import torch
from diffusers import WanPipeline
from safetensors.torch import load_file, save_file

from conftest import rel_l2, run_td
from dit_ref import BLOCK_KEYS, reference, tiny_model, wan_state_dict

# diffusers module -> Wan/kohya module of the Linears a Wan LoRA targets.
LINEARS = {"attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
           "attn1.to_out.0": "self_attn.o", "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k",
           "attn2.to_v": "cross_attn.v", "attn2.to_out.0": "cross_attn.o", "ffn.net.0.proj": "ffn.0",
           "ffn.net.2": "ffn.2"}


def pipeline(m):
    return WanPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=None, transformer=m)


def lora_pair(gen, w, rank):
    out_f, in_f = w.shape
    return (torch.randn(rank, in_f, generator=gen) / in_f ** 0.5,
            torch.randn(out_f, rank, generator=gen) / rank ** 0.5)


def diffusers_lora(gen, m, rank, modules):
    """A diffusers/PEFT-format LoRA over some Linears of m (the proj_out head too)."""
    sd, params = {}, dict(m.named_parameters())
    for name in modules:
        a, b = lora_pair(gen, params[f"{name}.weight"], rank)
        sd[f"transformer.{name}.lora_A.weight"] = a.contiguous()
        sd[f"transformer.{name}.lora_B.weight"] = b.contiguous()
    return sd


def fused(m, loras):
    """m with diffusers' load_lora_weights + set_adapters + fuse_lora applied:
    loras = [(path, scale)], merged in that order."""
    pipe = pipeline(m)
    names = []
    for i, (path, _) in enumerate(loras):
        pipe.load_lora_weights(str(path), adapter_name=f"l{i}")
        names.append(f"l{i}")
    pipe.set_adapters(names, [s for _, s in loras])
    pipe.fuse_lora(components=["transformer"], lora_scale=1.0)
    pipe.unload_lora_weights()
    return m


def merge(td_cli, dit, loras, out):
    run_td(td_cli, "lora-merge", "--dit", dit, *sum((["--lora", f"{p}={s!r}"] for p, s in loras), []),
           "--out", out)
    return {k: v.float().numpy() for k, v in load_file(str(out)).items()}


def assert_bitwise(ours, ref, what):
    assert set(ours) == set(ref), what
    for k in ref:
        if not np.array_equal(ours[k], ref[k]):
            diff = np.abs(ours[k].astype(np.float64) - ref[k]).max()
            raise AssertionError(f"{what}: {k} differs from diffusers' fused weight (max |d| {diff:.3g})")


def random_modules(gen, layers, count):
    names = [f"blocks.{b}.{k}" for b in range(layers) for k in LINEARS]
    pick = torch.randperm(len(names), generator=gen)[:count].tolist()
    return [names[i] for i in sorted(pick)] + ["proj_out"]


def test_peft_loras_merge_bit_exact(td_cli, tmp_path, seed):
    """Two diffusers/PEFT LoRAs (ranks 4 and 8, scales of their own) into a
    diffusers-layout and a Wan-layout checkpoint of the same model."""
    gen = torch.Generator().manual_seed(seed)
    m = tiny_model(gen, 2, 64)
    base = {k: v.detach().float().clone() for k, v in m.state_dict().items()}
    save_file(base, str(tmp_path / "dit.safetensors"))
    save_file(wan_state_dict(m), str(tmp_path / "wan.safetensors"))
    loras = []
    for i, (rank, scale) in enumerate([(4, 0.8), (8, -0.35)]):
        p = tmp_path / f"lora{i}.safetensors"
        save_file(diffusers_lora(gen, m, rank, random_modules(gen, 2, 9)), str(p))
        loras.append((p, scale))
    fused(m, loras)
    ref = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    changed = sum(not np.array_equal(ref[k], base[k].numpy()) for k in ref)
    assert changed >= 10, "the LoRAs changed too little to test anything"
    assert_bitwise(merge(td_cli, tmp_path / "dit.safetensors", loras, tmp_path / "m.safetensors"), ref,
                   "diffusers layout")
    ref_wan = {k: v.numpy() for k, v in wan_state_dict(m).items()}
    assert_bitwise(merge(td_cli, tmp_path / "wan.safetensors", loras, tmp_path / "mw.safetensors"), ref_wan,
                   "Wan layout")


def test_forward_with_lora_matches_diffusers(td_cli, tmp_path, seed):
    gen = torch.Generator().manual_seed(seed)
    m = tiny_model(gen, 2, 64)
    save_file({k: v.detach().float().contiguous() for k, v in m.state_dict().items()},
              str(tmp_path / "dit.safetensors"))
    lora = tmp_path / "lora.safetensors"
    save_file(diffusers_lora(gen, m, 4, random_modules(gen, 2, 12)), str(lora))
    x = torch.randn(16, 3, 4, 6, generator=gen).numpy()
    ctx = torch.randn(7, 24, generator=gen).numpy()
    t = float(torch.rand(1, generator=gen)) * 1000
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "c.npy", ctx)

    def forward(*lora_args):
        out = tmp_path / f"v{len(lora_args)}.npy"
        run_td(td_cli, "dit-forward", "--dit", tmp_path / "dit.safetensors", "--latents", tmp_path / "x.npy",
               "--t", repr(t), "--context", tmp_path / "c.npy", "--heads", 2, "--out", out, *lora_args)
        return np.load(out)

    plain = forward()
    fused(m, [(lora, 0.7)])
    ref = reference(m, x, t, ctx)
    ours = forward("--lora", f"{lora}=0.7")
    err = rel_l2(ours, ref)
    print(f"forward with LoRA: rel L2 {err:.3g}; the LoRA moves the output by {rel_l2(plain, ref):.3g}")
    assert err < 1e-5
    assert rel_l2(plain, ref) > 1e-3, "the LoRA did not change the forward"


def kohya_lora(gen, m, rank, alpha, musubi):
    """Every block Linear (as musubi-tuner trains): musubi's lora_unet_blocks_N_...
    or ComfyUI's diffusion_model.blocks.N... names, lora_down/lora_up/alpha;
    the ComfyUI one adds diff_b (bias differences) as such files carry."""
    sd, params = {}, dict(m.named_parameters())
    layers = len(m.blocks)
    for blk in range(layers):
        for dname, wname in LINEARS.items():
            a, b = lora_pair(gen, params[f"blocks.{blk}.{dname}.weight"], rank)
            mod = f"blocks.{blk}.{wname}"
            key = f"lora_unet_{mod.replace('.', '_')}" if musubi else f"diffusion_model.{mod}"
            sd[f"{key}.lora_down.weight"] = a.contiguous()
            sd[f"{key}.lora_up.weight"] = b.contiguous()
            sd[f"{key}.alpha"] = torch.tensor(float(alpha))
            if not musubi:
                sd[f"{key}.diff_b"] = 0.1 * torch.randn(b.shape[0], generator=gen)
    return sd


@pytest.mark.parametrize("musubi", [True, False], ids=["kohya-musubi", "comfyui"])
def test_kohya_lora_matches_diffusers_conversion(td_cli, tmp_path, seed, musubi):
    """alpha / rank = 3/4, not a power of two: the rounding of diffusers'
    folding of alpha into lora_down is what we must reproduce."""
    gen = torch.Generator().manual_seed(seed)
    m = tiny_model(gen, 2, 64)
    save_file({k: v.detach().float().contiguous() for k, v in m.state_dict().items()},
              str(tmp_path / "dit.safetensors"))
    save_file(wan_state_dict(m), str(tmp_path / "wan.safetensors"))
    kohya = tmp_path / "kohya.safetensors"
    save_file(kohya_lora(gen, m, 4, 3, musubi), str(kohya))
    converted = tmp_path / "converted.safetensors"
    save_file({k: v.contiguous() for k, v in WanPipeline.lora_state_dict(str(kohya)).items()}, str(converted))
    scale = 0.6
    fused(m, [(kohya, scale)])
    ref = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    direct = merge(td_cli, tmp_path / "dit.safetensors", [(kohya, scale)], tmp_path / "m1.safetensors")
    assert_bitwise(direct, ref, "kohya file into the diffusers layout")
    via = merge(td_cli, tmp_path / "dit.safetensors", [(converted, scale)], tmp_path / "m2.safetensors")
    assert_bitwise(via, direct, "diffusers' conversion of the kohya file")
    ref_wan = {k: v.numpy() for k, v in wan_state_dict(m).items()}
    assert_bitwise(merge(td_cli, tmp_path / "wan.safetensors", [(kohya, scale)], tmp_path / "m3.safetensors"),
                   ref_wan, "kohya file into the Wan layout")


def test_diff_keys_add_the_difference(td_cli, tmp_path, seed):
    """diff (a full weight difference; diffusers skips these, ComfyUI adds
    them) on a Linear and a norm: W + scale * diff, rounded once in f32."""
    gen = torch.Generator().manual_seed(seed)
    m = tiny_model(gen, 2, 64)
    wan = wan_state_dict(m)
    save_file(wan, str(tmp_path / "wan.safetensors"))
    diffs = {"blocks.1.self_attn.k": wan["blocks.1.self_attn.k.weight"].shape,
             "blocks.0.norm3": wan["blocks.0.norm3.weight"].shape}
    sd = {f"diffusion_model.{k}.diff": torch.randn(s, generator=gen) for k, s in diffs.items()}
    save_file(sd, str(tmp_path / "diff.safetensors"))
    ours = merge(td_cli, tmp_path / "wan.safetensors", [(tmp_path / "diff.safetensors", 0.5)],
                 tmp_path / "m.safetensors")
    for k in diffs:
        want = (wan[f"{k}.weight"] + sd[f"diffusion_model.{k}.diff"] * np.float32(0.5)).numpy()
        assert np.array_equal(ours[f"{k}.weight"], want), k
    untouched = [k for k in wan if k[:-len(".weight")] not in diffs]
    assert all(np.array_equal(ours[k], wan[k].numpy()) for k in untouched)


def test_bad_loras_fail_naming_the_problem(td_cli, tmp_path, seed):
    gen = torch.Generator().manual_seed(seed)
    m = tiny_model(gen, 2, 64)
    save_file({k: v.detach().float().contiguous() for k, v in m.state_dict().items()},
              str(tmp_path / "dit.safetensors"))
    wide = tiny_model(gen, 3, 64)     # another width: 192 instead of 128
    save_file(diffusers_lora(gen, wide, 4, ["blocks.0.attn1.to_q"]), str(tmp_path / "wide.safetensors"))
    save_file({"transformer.blocks.0.attn9.to_q.lora_A.weight": torch.zeros(4, 128),
               "transformer.blocks.0.attn9.to_q.lora_B.weight": torch.zeros(128, 4)},
              str(tmp_path / "nomatch.safetensors"))
    cases = {"wide.safetensors": ["transformer.blocks.0.attn1.to_q.lora_A.weight", "[4,192]", "[128,128]"],
             "nomatch.safetensors": ["transformer.blocks.0.attn9.to_q.lora_A.weight", "matches no module"]}
    for name, words in cases.items():
        p = run_td(td_cli, "dit-forward", "--dit", tmp_path / "dit.safetensors", "--lora", tmp_path / name,
                   "--latents", "x.npy", "--t", "1", "--context", "c.npy", "--out", tmp_path / "v.npy",
                   "--heads", 2, check=False)
        assert p.returncode != 0, name
        for w in words:
            assert w in p.stderr, (name, w, p.stderr)


def test_bf16_checkpoint_merge_bit_exact(td_cli, tmp_path, seed):
    """Released checkpoints are bf16: diffusers keeps the adapter in f32 and
    adds its f32 delta into the bf16 weight in place (one rounding per LoRA);
    ours equals that bit for bit."""
    gen = torch.Generator().manual_seed(seed)
    m = tiny_model(gen, 2, 64)
    loras = []
    for i, (rank, scale) in enumerate([(4, 0.9), (8, 0.4)]):
        p = tmp_path / f"lora{i}.safetensors"
        save_file(diffusers_lora(gen, m, rank, random_modules(gen, 2, 9)), str(p))
        loras.append((p, scale))
    m = m.to(torch.bfloat16)
    save_file({k: v.detach().clone() for k, v in m.state_dict().items()}, str(tmp_path / "dit.safetensors"))
    fused(m, loras)
    ref = {k: v.detach().float().numpy() for k, v in m.state_dict().items()}
    ours = merge(td_cli, tmp_path / "dit.safetensors", loras, tmp_path / "m.safetensors")
    assert load_file(str(tmp_path / "m.safetensors"))["proj_out.weight"].dtype == torch.bfloat16
    assert_bitwise(ours, ref, "bf16 checkpoint")
