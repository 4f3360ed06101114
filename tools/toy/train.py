"""Train turbodiff's default model on the toy clip domain (tools/toy/clips.py)
and export it in the files the engine loads.

The model is the architecture family the engine runs, at toy size:
  tokenizer  SentencePiece unigram trained on the captions (T5 ids: pad 0,
             </s> 1, unk 2);
  text       a umT5 encoder (transformers' UMT5EncoderModel), random and
             frozen: the captions only need distinct, stable embeddings;
  VAE        a Wan VAE (diffusers' AutoencoderKLWan, z 16, 8x spatial and
             4x temporal compression), trained as an autoencoder, then
             rescaled so its latents are about unit variance under Wan's
             fixed latent normalisation (which the engine applies);
  DiT        a Wan DiT (diffusers' WanTransformer3DModel) trained by flow
             matching (x_t = (1 - t) x0 + t noise, target noise - x0,
             timestep t * 1000), half the time at the four times the
             engine's 4-step rCM sampler visits.

    python tools/toy/train.py --work build/toy-train all          # train + export to models/toy
    python tools/toy/train.py --work /tmp/q --quick all           # minutes: proves the script
    python tools/toy/train.py --work build/toy-train eval         # pass rate in PyTorch

Stages (each resumes from the files of the one before in --work):
tokenizer, vae, latents, dit, eval, export.
"""
import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np
import sentencepiece as spm
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from safetensors.torch import save_file
from transformers import UMT5Config, UMT5EncoderModel

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import checker  # noqa: E402
import clips    # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEXT_LEN = 512                       # the engine pads the context to 512 rows

CONFIG = {
    "vae": dict(base_dim=16, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                temperal_downsample=[False, True, True]),
    "text": dict(d_model=64, d_kv=16, num_heads=4, d_ff=160, num_layers=2),
    "dit": dict(patch_size=(1, 2, 2), num_attention_heads=1, attention_head_dim=128, in_channels=16,
                out_channels=16, text_dim=64, freq_dim=256, ffn_dim=512, num_layers=4,
                cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6),
    "full": dict(vae_steps=1000, vae_batch=4, clips=3000, dit_steps=4000, dit_batch=32, eval_n=50),
    "quick": dict(vae_steps=60, vae_batch=2, clips=64, dit_steps=120, dit_batch=8, eval_n=6),
}
# rCM's 4 steps at sigma_max 80: TrigFlow atan(80), 1.5, 1.4, 1.0 as RF time
RCM_T = [math.sin(s) / (math.sin(s) + math.cos(s)) for s in (math.atan(80), 1.5, 1.4, 1.0)]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def video(seed_list):
    """[B, 3, T, H, W] in [-1, 1] and the captions."""
    caps, frames = zip(*(clips.clip(int(s)) for s in seed_list))
    x = torch.from_numpy(np.stack(frames)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    return x, list(caps)


# --- tokenizer and text encoder ---------------------------------------------
def stage_tokenizer(work, cfg):
    captions = clips.all_captions()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(captions), model_prefix=str(work / "spiece"), model_type="unigram",
        vocab_size=64, hard_vocab_limit=False, character_coverage=1.0, pad_id=0, eos_id=1,
        unk_id=2, bos_id=-1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(work / "spiece.model"))
    torch.manual_seed(1234)
    t5 = UMT5EncoderModel(UMT5Config(vocab_size=sp.get_piece_size(), relative_attention_num_buckets=32,
                                     relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
                                     dropout_rate=0.0, layer_norm_epsilon=1e-6, **CONFIG["text"])).eval()
    sd = {k: v.contiguous() for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(sd, str(work / "umt5.safetensors"))
    embeddings = {}
    with torch.no_grad():
        for cap in captions:
            ids = sp.encode(cap) + [1]
            h = t5(input_ids=torch.tensor([ids])).last_hidden_state[0]
            ctx = torch.zeros(TEXT_LEN, h.shape[1])
            ctx[: len(ids)] = h
            embeddings[cap] = ctx[: len(ids)].clone()
    torch.save(embeddings, work / "text.pt")
    log(f"tokenizer: {sp.get_piece_size()} pieces; {len(captions)} captions encoded")


def context(embeddings, caps):
    out = torch.zeros(len(caps), TEXT_LEN, CONFIG["text"]["d_model"])
    for i, c in enumerate(caps):
        out[i, : len(embeddings[c])] = embeddings[c]
    return out


# --- VAE -------------------------------------------------------------------------
def decode_unclamped(vae, z):
    """AutoencoderKLWan's decode without its final clamp to [-1, 1]: a clamped
    pixel gets no gradient, so one that overshoots early never comes back."""
    vae.clear_cache()
    x = vae.post_quant_conv(z)
    out = []
    for i in range(z.shape[2]):
        vae._conv_idx = [0]
        out.append(vae.decoder(x[:, :, i:i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx,
                               first_chunk=i == 0))
    return torch.cat(out, 2)


def stage_vae(work, cfg):
    torch.manual_seed(1)
    vae = AutoencoderKLWan(**CONFIG["vae"])
    opt = torch.optim.AdamW(vae.parameters(), lr=5e-4, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-4, total_steps=cfg["vae_steps"], pct_start=0.05)
    rng = np.random.default_rng(7)
    curve = []
    for step in range(cfg["vae_steps"]):
        x, _ = video(rng.integers(10**6, 10**9, cfg["vae_batch"]))
        post = vae.encode(x).latent_dist
        rec = decode_unclamped(vae, post.sample())
        err = (rec - x) ** 2
        mse = err.mean()
        # The shape is 5% of the pixels: weighted 10x, it is learnt before
        # the optimiser settles on painting the background alone.
        fg = ((x - x[:, :, :, :1, :1]).abs().sum(1, keepdim=True) > 1e-3).float()
        kl = post.kl().mean() / x[0].numel()
        loss = (err * (1 + 9 * fg)).mean() + 1e-3 * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        curve.append(mse.item())
        if step % 50 == 0 or step == cfg["vae_steps"] - 1:
            log(f"vae step {step}: mse {np.mean(curve[-50:]):.5f} kl/px {kl.item():.4f}")
    torch.save(vae.state_dict(), work / "vae_raw.pt")
    json.dump(curve, open(work / "vae_curve.json", "w"))


def load_vae(work, name):
    vae = AutoencoderKLWan(**CONFIG["vae"])
    vae.load_state_dict(torch.load(work / name))
    return vae.eval()


@torch.no_grad()
def renormalise(vae, mu):
    """Fold per-channel affine maps into quant_conv and post_quant_conv so
    that Wan's fixed normalisation (mu - mean) / std of the exported VAE gives
    unit-variance latents: the DiT and the rCM sampler (which starts from
    unit noise) expect them."""
    mean = torch.tensor(vae.config.latents_mean)
    std = torch.tensor(vae.config.latents_std)
    m, s = mu.mean((0, 2, 3, 4)), mu.std((0, 2, 3, 4))
    a = std / s                                   # mu' = a (mu - m) + mean
    q = vae.quant_conv
    z = CONFIG["vae"]["z_dim"]
    q.weight[:z] *= a.view(-1, 1, 1, 1, 1)
    q.bias[:z] = a * (q.bias[:z] - m) + mean
    p = vae.post_quant_conv                       # z = m + (mu' - mean) / a
    w = p.weight[:, :, 0, 0, 0].clone()
    p.bias += w @ (m - mean / a)
    p.weight[:, :, 0, 0, 0] = w / a


@torch.no_grad()
def encode(vae, seeds, batch=8):
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    out, caps = [], []
    for i in range(0, len(seeds), batch):
        x, c = video(seeds[i: i + batch])
        out.append((vae.encode(x).latent_dist.mean - mean) / std)
        caps += c
    return torch.cat(out), caps


def stage_latents(work, cfg):
    vae = load_vae(work, "vae_raw.pt")
    seeds = np.arange(cfg["clips"])
    probe, _ = encode(vae, seeds[:256])
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    renormalise(vae, probe * std + mean)
    torch.save(vae.state_dict(), work / "vae.pt")
    lat, caps = encode(vae, seeds)
    x, _ = video(seeds[:8])
    with torch.no_grad():
        rec = vae.decode(lat[:8] * std + mean).sample
    log(f"latents {tuple(lat.shape)}: mean {lat.mean():.3f} std {lat.std():.3f}; "
        f"reconstruction mse {((rec - x) ** 2).mean():.5f}")
    torch.save({"latents": lat, "captions": caps}, work / "latents.pt")


# --- DiT -------------------------------------------------------------------------
def new_dit():
    torch.manual_seed(2)
    return WanTransformer3DModel(**CONFIG["dit"])


def stage_dit(work, cfg):
    data = torch.load(work / "latents.pt")
    lat, caps = data["latents"], data["captions"]
    emb = torch.load(work / "text.pt")
    dit = new_dit()
    opt = torch.optim.AdamW(dit.parameters(), lr=3e-4, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-4, total_steps=cfg["dit_steps"], pct_start=0.05)
    rng = np.random.default_rng(11)
    curve = []
    for step in range(cfg["dit_steps"]):
        idx = rng.integers(0, len(lat), cfg["dit_batch"])
        x0 = lat[idx]
        ctx = context(emb, [caps[i] for i in idx])
        # half at the sampler's times (jittered), half logit-normal
        t = torch.sigmoid(torch.randn(len(idx)))
        at = torch.tensor(RCM_T)[torch.from_numpy(rng.integers(0, 4, len(idx)))]
        pick = torch.rand(len(idx)) < 0.5
        t = torch.where(pick, (at + 0.01 * torch.randn(len(idx))).clamp(0.01, 0.999), t)
        noise = torch.randn_like(x0)
        tt = t.view(-1, 1, 1, 1, 1)
        v = dit(hidden_states=(1 - tt) * x0 + tt * noise, timestep=t * 1000,
                encoder_hidden_states=ctx, return_dict=False)[0]
        loss = ((v - (noise - x0)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0)
        opt.step()
        sched.step()
        curve.append(loss.item())
        if step % 100 == 0 or step == cfg["dit_steps"] - 1:
            log(f"dit step {step}: loss {np.mean(curve[-100:]):.4f}")
    torch.save(dit.state_dict(), work / "dit.pt")
    json.dump(curve, open(work / "dit_curve.json", "w"))


@torch.no_grad()
def sample(dit, ctx, shape, gen):
    """The engine's 4-step stochastic rCM loop (engine/src/sample/rcm.h)."""
    t = RCM_T + [0.0]
    x = torch.randn(shape, generator=gen) * t[0]
    for i in range(4):
        v = dit(hidden_states=x, timestep=torch.full((shape[0],), t[i] * 1000), encoder_hidden_states=ctx,
                return_dict=False)[0]
        x0 = x - t[i] * v
        x = (1 - t[i + 1]) * x0 + t[i + 1] * torch.randn(shape, generator=gen)
    return x


def eval_prompts(n):
    """n fixed (prompt, seed) pairs spread over the domain."""
    caps = clips.all_captions()
    rng = np.random.default_rng(2025)
    return [(caps[i], int(s)) for i, s in zip(rng.choice(len(caps), n, replace=False), rng.integers(0, 10**6, n))]


def stage_eval(work, cfg):
    vae = load_vae(work, "vae.pt")
    dit = new_dit()
    dit.load_state_dict(torch.load(work / "dit.pt"))
    dit.eval()
    emb = torch.load(work / "text.pt")
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    ok = 0
    pairs = eval_prompts(cfg["eval_n"])
    for cap, seed in pairs:
        gen = torch.Generator().manual_seed(seed)
        lat = sample(dit, context(emb, [cap]), (1, 16, 5, 8, 8), gen)
        with torch.no_grad():
            frames = vae.decode(lat * std + mean).sample[0].clamp(-1, 1)
        rgb = ((frames.permute(1, 2, 3, 0) + 1) * 127.5).round().byte().numpy()
        good, rep = checker.check(rgb, cap)
        ok += good
        if not good:
            log(f"FAIL {cap}: {rep['found']}")
    log(f"eval (PyTorch, 4-step rCM): {ok}/{len(pairs)} pass")


# --- export ------------------------------------------------------------------------
def stage_export(work, cfg, out):
    out.mkdir(parents=True, exist_ok=True)
    vae = load_vae(work, "vae.pt")
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(out / "vae.safetensors"))
    dit = new_dit()
    dit.load_state_dict(torch.load(work / "dit.pt"))
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in dit.state_dict().items()},
              str(out / "dit.safetensors"))
    for name in ("umt5.safetensors", "spiece.model"):
        (out / name).write_bytes((work / name).read_bytes())
    manifest = {"name": "turbodiff toy: coloured shapes moving on plain backgrounds (64x64, 17 frames)",
                "dit": "dit.safetensors", "vae": "vae.safetensors", "t5": "umt5.safetensors",
                "tokenizer": "spiece.model", "size": f"{clips.SIZE}x{clips.SIZE}", "frames": clips.FRAMES}
    (out / "turbodiff.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"exported to {out}: " + ", ".join(f"{p.name} {p.stat().st_size // 1024} KiB" for p in sorted(out.iterdir())))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stages", nargs="+", choices=["tokenizer", "vae", "latents", "dit", "eval", "export", "all"])
    ap.add_argument("--work", type=pathlib.Path, default=ROOT / "build" / "toy-train")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "models" / "toy")
    ap.add_argument("--quick", action="store_true", help="tiny step counts: proves the script in minutes")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = CONFIG["quick" if a.quick else "full"]
    a.work.mkdir(parents=True, exist_ok=True)
    order = ["tokenizer", "vae", "latents", "dit", "eval", "export"]
    for st in order if "all" in a.stages else [s for s in order if s in a.stages]:
        t0 = time.time()
        log(f"stage {st}")
        if st == "export":
            stage_export(a.work, cfg, a.out)
        else:
            globals()[f"stage_{st}"](a.work, cfg)
        log(f"stage {st} done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
