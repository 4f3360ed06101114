"""Train turbodiff's default model on the toy clip domain (tools/toy/clips.py)
and export it in the files the engine loads.

The model is the architecture family the engine runs, at toy size:
  tokenizer  SentencePiece unigram trained on the captions (T5 ids: pad 0,
             </s> 1, unk 2);
  text       a umT5 encoder (transformers' UMT5EncoderModel), trained with
             the DiT: a frozen random one gave captions too alike for the
             DiT to tell colours apart (1/50 clips right);
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
tokenizer, vae, latents, dit, distil, eval, export.
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
from diffusers.models.transformers.transformer_wan import WanAttnProcessor
from safetensors.torch import load_file, save_file
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
    # VAE phases: (steps, batch, frames, window size, peak lr)
    "full": dict(vae_phases=[(3000, 16, 1, 32, 1e-3), (2500, 8, 9, 32, 5e-4), (800, 8, 17, 32, 3e-4),
                             (300, 2, 17, 64, 2e-4)],
                 clips=3000, dit_steps=3000, dit_batch=32, distil_pairs=2048, teacher_steps=24,
                 distil_steps=1500, eval_n=50),
    "quick": dict(vae_phases=[(40, 4, 1, 32, 1e-3), (20, 2, 5, 32, 5e-4), (20, 1, 17, 64, 2e-4)],
                  clips=64, dit_steps=120, dit_batch=8, distil_pairs=16, teacher_steps=4, distil_steps=40,
                  eval_n=6),
}


def _one_of(words):
    """The words as "a, b or c"."""
    return f"{', '.join(words[:-1])} or {words[-1]}"


# What the model draws, from clips.py's vocabulary: the manifest's
# "description", which the engine logs when the model loads, since any
# other prompt renders too.
DESCRIPTION = (f"draws one shape ({_one_of(clips.SHAPES)}) of one colour that moves "
               f"{_one_of([m for m in clips.MOTIONS if m not in ('grows', 'shrinks')])}, grows or "
               f"shrinks, on a plain background of another colour ({', '.join(clips.COLOURS)}), from "
               f"prompts such as \"{clips.caption('red', 'circle', 'right', 'blue')}\" or "
               f"\"{clips.caption('white', 'square', 'grows', 'black')}\"; any other prompt still "
               "gives some shape in some colour")
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
def new_t5(vocab):
    return UMT5EncoderModel(UMT5Config(vocab_size=vocab, relative_attention_num_buckets=32,
                                       relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
                                       dropout_rate=0.0, layer_norm_epsilon=1e-6, **CONFIG["text"]))


def tokens(work):
    """caption -> ids with </s>, as the engine's tokenizer gives them."""
    sp = spm.SentencePieceProcessor(model_file=str(work / "spiece.model"))
    return sp.get_piece_size(), {cap: sp.encode(cap) + [1] for cap in clips.all_captions()}


def encode_text(t5, ids, caps):
    """umT5 states of a batch of captions, each caption alone (masked):
    one [n, d] tensor per caption."""
    n = max(len(ids[c]) for c in caps)
    tok = torch.zeros(len(caps), n, dtype=torch.long)
    mask = torch.zeros(len(caps), n, dtype=torch.long)
    for i, c in enumerate(caps):
        tok[i, : len(ids[c])] = torch.tensor(ids[c])
        mask[i, : len(ids[c])] = 1
    h = t5(input_ids=tok, attention_mask=mask).last_hidden_state
    return [h[i, : len(ids[c])] for i, c in enumerate(caps)]


def save_t5(work, t5):
    """umt5.safetensors, the encoder the engine runs (embeddings live in shared.weight)."""
    sd = {k: v.contiguous() for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(sd, str(work / "umt5.safetensors"))


def load_t5(work, name):
    vocab, _ = tokens(work)
    t5 = new_t5(vocab)
    t5.load_state_dict(load_file(str(work / name)), strict=False)     # embeddings are tied
    return t5


@torch.no_grad()
def caption_states(work):
    """caption -> its umT5 states under umt5.safetensors, for the stages
    after the DiT's (the encoder is fixed by then)."""
    t5 = load_t5(work, "umt5.safetensors").eval()
    _, ids = tokens(work)
    return {c: encode_text(t5, ids, [c])[0] for c in ids}


def stage_tokenizer(work, cfg):
    captions = clips.all_captions()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(captions), model_prefix=str(work / "spiece"), model_type="unigram",
        vocab_size=64, hard_vocab_limit=False, character_coverage=1.0, pad_id=0, eos_id=1,
        unk_id=2, bos_id=-1, minloglevel=2)
    vocab, _ = tokens(work)
    torch.manual_seed(1234)
    save_t5(work, new_t5(vocab))
    (work / "umt5_init.safetensors").write_bytes((work / "umt5.safetensors").read_bytes())
    log(f"tokenizer: {vocab} pieces; {len(captions)} captions")


def engine_context(dit, embeddings, caps):
    """The context as the engine builds it: the caption's rows, then zero
    rows up to 512."""
    dit.padding.bias = None
    out = torch.zeros(len(caps), TEXT_LEN, CONFIG["text"]["d_model"])
    for i, c in enumerate(caps):
        out[i, : len(embeddings[c])] = embeddings[c]
    return out


def short_context(dit, states):
    """The same attention as engine_context's, from a context about 2x cheaper
    to train on: each caption's rows, one zero row, and (see PaddingBias)
    a bias that makes the zero rows stand for all the engine's padding."""
    m = max(len(s) for s in states) + 1
    ctx = torch.stack([torch.cat([s, s.new_zeros(m - len(s), s.shape[1])]) for s in states])
    lens = torch.tensor([[len(s)] for s in states])
    bias = torch.where(torch.arange(m)[None] >= lens, torch.log((TEXT_LEN - lens) / (m - lens)), 0.0)
    dit.padding.bias = bias[:, None, None, :]
    return ctx


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


def shape_mask(x):
    """[B, 3, T, H, W] clips -> [B, T, H, W], true where a pixel differs from
    the background (the corner pixel, which no shape reaches)."""
    return (x - x[:, :, :, :1, :1]).abs().sum(1) > 1e-3


def windows(rng, n, frames, size):
    """n training windows: `frames` consecutive frames of a clip, cropped to
    size x size around its shape. A conv net learns the same thing from a
    window as from the whole clip, and a window near the shape is mostly
    shape, where the whole clip is 95% background: pixels spent where there
    is something to learn. [n, 3, frames, size, size]."""
    x, _ = video(rng.integers(10**6, 10**9, n))
    out = []
    for v in x:
        t0 = int(rng.integers(0, v.shape[1] - frames + 1))
        w = v[:, t0:t0 + frames]
        ys, xs = np.nonzero(shape_mask(w[None])[0].any(0).numpy())
        jitter = rng.integers(-size // 4, size // 4 + 1, 2)
        oy, ox = (int(np.clip(int(c.mean()) - size // 2 + j, 0, clips.SIZE - size)) for c, j in zip((ys, xs), jitter))
        out.append(w[:, :, oy:oy + size, ox:ox + size])
    return torch.stack(out)


def stage_vae(work, cfg, first_phase=0):
    """A deterministic autoencoder (the posterior's mean plus a little noise,
    its scale held by a small L2 term): the sampled posterior of a fresh KL-VAE
    has unit variance and drowns what the encoder says for hundreds of steps.
    The Wan VAE learns by the number of steps more than by the pixels a step
    sees, so the phases go from many cheap steps (single-frame windows) to
    few dear ones (whole clips, borders included); each phase has its own
    one-cycle learning rate."""
    torch.manual_seed(1)
    vae = AutoencoderKLWan(**CONFIG["vae"])
    if first_phase:
        vae.load_state_dict(torch.load(work / "vae_raw.pt"))
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    rng = np.random.default_rng(7 + first_phase)
    curve = []
    for steps, batch, frames, size, lr in cfg["vae_phases"][first_phase:]:
        log(f"vae phase: {steps} steps of {batch} x {frames} frames x {size}^2, lr {lr}")
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                    pct_start=max(0.05, 3 / steps))
        for step in range(steps):
            x = windows(rng, batch, frames, size)
            mu = vae.encode(x).latent_dist.mode()
            rec = decode_unclamped(vae, mu + 0.05 * torch.randn_like(mu))
            err = (rec - x) ** 2
            # shape pixels weighted: learnt before the optimiser settles on
            # painting the background alone
            fg = shape_mask(x).unsqueeze(1).float()
            loss = (err * (1 + 4 * fg)).mean() + 1e-3 * (mu ** 2).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            opt.step()
            sched.step()
            curve.append(err.mean().item())
            if step % 100 == 0 or step == steps - 1:
                log(f"vae step {step}: mse {np.mean(curve[-100:]):.5f} |mu| {mu.abs().mean().item():.3f}")
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
    # the VAE's own ceiling on the pass rate: held-out clips, encoded and decoded
    held = np.arange(10**6, 10**6 + 30)
    lat, caps = encode(vae, held)
    ok = sum(checker.check(rgb, c)[0] for rgb, c in zip(to_rgb(vae, lat), caps))
    log(f"round trip: the checker passes {ok}/{len(held)} held-out clips")


@torch.no_grad()
def to_rgb(vae, lat):
    """Normalised latents -> one [frames, h, w, 3] uint8 clip each, as the engine outputs them."""
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    frames = vae.decode(lat * std + mean).sample.clamp(-1, 1)
    return [((f.permute(1, 2, 3, 0) + 1) * 127.5).round().byte().numpy() for f in frames]


# --- DiT -------------------------------------------------------------------------
def rcm_times(rng, n):
    """n times drawn from the four the engine's 4-step rCM sampler visits, jittered."""
    at = torch.tensor(RCM_T)[torch.from_numpy(rng.integers(0, 4, n))]
    return (at + 0.01 * torch.randn(n)).clamp(0.01, 0.999)


def final_dit(work):
    """The distilled DiT when the distil stage has run on the current flow
    model, else the flow model itself."""
    dit = new_dit()
    dit.load_state_dict(torch.load(work / ("dit.pt" if (work / "dit.pt").exists() else "dit_flow.pt")))
    return dit.eval()


class PaddingBias(WanAttnProcessor):
    """Wan's attention with an additive bias on the logits, for the cross
    attention. Every zero row of the context yields the same key and value
    (the text embedder and the key norm act row by row), so k zero rows
    attend exactly as one whose logit is raised by log(k)."""
    bias = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        return super().__call__(attn, hidden_states, encoder_hidden_states, self.bias, rotary_emb)


def new_dit():
    torch.manual_seed(2)
    dit = WanTransformer3DModel(**CONFIG["dit"])
    dit.padding = PaddingBias()
    for block in dit.blocks:
        block.attn2.set_processor(dit.padding)
    return dit


def stage_dit(work, cfg, resume=False):
    data = torch.load(work / "latents.pt")
    lat, caps = data["latents"], data["captions"]
    t5 = load_t5(work, "umt5.safetensors" if resume else "umt5_init.safetensors").train()
    _, ids = tokens(work)
    dit = new_dit()
    if resume:
        dit.load_state_dict(torch.load(work / "dit_flow.pt"))
    (work / "dit.pt").unlink(missing_ok=True)          # distilled from the flow model this stage replaces
    opt = torch.optim.AdamW(list(dit.parameters()) + list(t5.parameters()), lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=cfg["dit_steps"], pct_start=0.05)
    rng = np.random.default_rng(11 + resume)
    curve = []
    for step in range(cfg["dit_steps"]):
        idx = rng.integers(0, len(lat), cfg["dit_batch"])
        x0 = lat[idx]
        ctx = short_context(dit, encode_text(t5, ids, [caps[i] for i in idx]))
        # half at the sampler's times (jittered), half logit-normal
        t = torch.sigmoid(torch.randn(len(idx)))
        pick = torch.rand(len(idx)) < 0.5
        t = torch.where(pick, rcm_times(rng, len(idx)), t)
        noise = torch.randn_like(x0)
        tt = t.view(-1, 1, 1, 1, 1)
        v = dit(hidden_states=(1 - tt) * x0 + tt * noise, timestep=t * 1000,
                encoder_hidden_states=ctx, return_dict=False)[0]
        loss = ((v - (noise - x0)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(dit.parameters()) + list(t5.parameters()), 1.0)
        opt.step()
        sched.step()
        curve.append(loss.item())
        if step % 100 == 0 or step == cfg["dit_steps"] - 1:
            log(f"dit step {step}: loss {np.mean(curve[-100:]):.4f}")
        if step % 500 == 499:
            torch.save(dit.state_dict(), work / "dit_flow.pt")
            save_t5(work, t5)
    torch.save(dit.state_dict(), work / "dit_flow.pt")
    save_t5(work, t5)
    json.dump(curve, open(work / "dit_curve.json", "w"))


@torch.no_grad()
def teacher_sample(dit, ctx, noise, steps):
    """The flow model's ODE from noise to a clip: Euler over Wan's shifted
    schedule (shift 3: more steps at high noise, where the clip is decided)."""
    ts = torch.linspace(1, 0, steps + 1)
    ts = 3 * ts / (1 + 2 * ts)
    x = noise
    for i in range(steps):
        v = dit(hidden_states=x, timestep=torch.full((len(x),), ts[i].item() * 1000),
                encoder_hidden_states=ctx, return_dict=False)[0]
        x = x + (ts[i + 1] - ts[i]) * v
    return x


def stage_distil(work, cfg):
    """Reflow for 4 steps. A flow model's one-step guess from noise is the
    mean of every clip the prompt allows (a grey blur that fades as the
    shape's place grows uncertain); the engine's rCM sampler takes just
    four such guesses. So the teacher's ODE pairs noises with clips, and the
    student (the teacher, fine-tuned) learns the straight path of each pair,
    at the sampler's four times: its guess from noise is then one sharp clip."""
    emb = caption_states(work)
    teacher = new_dit()
    teacher.load_state_dict(torch.load(work / "dit_flow.pt"))
    teacher.eval()
    caps_all = clips.all_captions()
    rng = np.random.default_rng(13)
    gen = torch.Generator().manual_seed(13)
    caps = [caps_all[i] for i in rng.integers(0, len(caps_all), cfg["distil_pairs"])]
    noise = torch.randn(len(caps), 16, 5, 8, 8, generator=gen)
    x0 = torch.cat([teacher_sample(teacher, short_context(teacher, [emb[c] for c in caps[i: i + 64]]),
                                   noise[i: i + 64], cfg["teacher_steps"]) for i in range(0, len(caps), 64)])
    log(f"distil: {len(caps)} teacher pairs ({cfg['teacher_steps']} Euler steps); latent std {x0.std():.3f}")
    dit = teacher.train()
    opt = torch.optim.AdamW(dit.parameters(), lr=2e-4, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-4, total_steps=cfg["distil_steps"], pct_start=0.05)
    curve = []
    for step in range(cfg["distil_steps"]):
        idx = torch.from_numpy(rng.integers(0, len(caps), cfg["dit_batch"]))
        t = rcm_times(rng, len(idx)).view(-1, 1, 1, 1, 1)
        xt = (1 - t) * x0[idx] + t * noise[idx]
        v = dit(hidden_states=xt, timestep=t.flatten() * 1000,
                encoder_hidden_states=short_context(dit, [emb[caps[i]] for i in idx]), return_dict=False)[0]
        loss = ((v - (noise[idx] - x0[idx])) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0)
        opt.step()
        sched.step()
        curve.append(loss.item())
        if step % 100 == 0 or step == cfg["distil_steps"] - 1:
            log(f"distil step {step}: loss {np.mean(curve[-100:]):.4f}")
    torch.save(dit.state_dict(), work / "dit.pt")
    json.dump(curve, open(work / "distil_curve.json", "w"))


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
    """The pass rate of eval_n fixed prompts: with the engine's 4-step rCM
    sampler, or (ode_steps) the flow model's ODE, the distillation teacher."""
    vae = load_vae(work, "vae.pt")
    dit = final_dit(work)
    if cfg["ode_steps"]:
        dit.load_state_dict(torch.load(work / "dit_flow.pt"))
    emb = caption_states(work)
    ok = 0
    pairs = eval_prompts(cfg["eval_n"])
    for cap, seed in pairs:
        gen = torch.Generator().manual_seed(seed)
        ctx = engine_context(dit, emb, [cap])
        if cfg["ode_steps"]:
            lat = teacher_sample(dit, ctx, torch.randn((1, 16, 5, 8, 8), generator=gen), cfg["ode_steps"])
        else:
            lat = sample(dit, ctx, (1, 16, 5, 8, 8), gen)
        good, rep = checker.check(to_rgb(vae, lat)[0], cap)
        ok += good
        if not good:
            log(f"FAIL {cap}: {rep['found']}")
    how = f"flow model, {cfg['ode_steps']}-step Euler ODE" if cfg["ode_steps"] else "4-step rCM"
    log(f"eval (PyTorch, {how}): {ok}/{len(pairs)} pass")


# --- export ------------------------------------------------------------------------
def stage_export(work, cfg, out):
    out.mkdir(parents=True, exist_ok=True)
    vae = load_vae(work, "vae.pt")
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(out / "vae.safetensors"))
    dit = final_dit(work)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in dit.state_dict().items()},
              str(out / "dit.safetensors"))
    for name in ("umt5.safetensors", "spiece.model"):
        (out / name).write_bytes((work / name).read_bytes())
    manifest = {"name": "turbodiff toy: coloured shapes moving on plain backgrounds (64x64, 17 frames)",
                "description": DESCRIPTION,
                "dit": "dit.safetensors", "vae": "vae.safetensors", "t5": "umt5.safetensors",
                "tokenizer": "spiece.model", "size": f"{clips.SIZE}x{clips.SIZE}", "frames": clips.FRAMES}
    (out / "turbodiff.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"exported to {out}: " + ", ".join(f"{p.name} {p.stat().st_size // 1024} KiB" for p in sorted(out.iterdir())))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stages", nargs="+", choices=["tokenizer", "vae", "latents", "dit", "distil", "eval", "export", "all"])
    ap.add_argument("--work", type=pathlib.Path, default=ROOT / "build" / "toy-train")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "models" / "toy")
    ap.add_argument("--quick", action="store_true", help="tiny step counts: proves the script in minutes")
    ap.add_argument("--vae-from-phase", type=int, default=0,
                    help="resume the VAE from vae_raw.pt at this phase (fresh optimiser)")
    ap.add_argument("--dit-resume", action="store_true",
                    help="continue the DiT and umT5 from dit_flow.pt and umt5.safetensors (fresh optimiser)")
    ap.add_argument("--dit-steps", type=int, default=0, help="DiT steps in this run (0: the config's)")
    ap.add_argument("--ode-steps", type=int, default=0,
                    help="eval: sample the flow model's ODE in this many steps instead of the 4-step rCM")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = dict(CONFIG["quick" if a.quick else "full"])
    cfg["dit_steps"] = a.dit_steps or cfg["dit_steps"]
    cfg["ode_steps"] = a.ode_steps
    a.work.mkdir(parents=True, exist_ok=True)
    order = ["tokenizer", "vae", "latents", "dit", "distil", "eval", "export"]
    for st in order if "all" in a.stages else [s for s in order if s in a.stages]:
        t0 = time.time()
        log(f"stage {st}")
        if st == "export":
            stage_export(a.work, cfg, a.out)
        elif st == "vae":
            stage_vae(a.work, cfg, a.vae_from_phase)
        elif st == "dit":
            stage_dit(a.work, cfg, a.dit_resume)
        else:
            globals()[f"stage_{st}"](a.work, cfg)
        log(f"stage {st} done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
