"""The public API end to end (turbodiff generate -> td_engine_open ->
td_job_run): a tiny random model set in the real file formats, driven by a
prompt (tokenizer + umT5) or by a precomputed embedding.

The stages it chains are each proven against diffusers/transformers in their
own tests (test_dit.py: t2v rCM vs PyTorch; test_vae.py); here we check that
the pipeline composes them exactly as `turbodiff t2v --vae` does, delivers
exactly the frames asked for, and is deterministic per seed.
"""
import json
import pathlib

import numpy as np
import torch

from conftest import run_td
from dit_ref import tiny_model, wan_state_dict
from umt5_ref import save as save_umt5, tiny_model as tiny_umt5

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
VAE = DATA / "vae" / "vae_wan.pth"
TOKENIZER = DATA / "text" / "spiece.model"     # 1500 pieces


def model_set(tmp_path, seed):
    gen = torch.Generator().manual_seed(seed)
    dit = tiny_model(gen, heads=1, head_dim=128, layers=1, ffn=64, text_dim=64)
    torch.save({f"net.{k}": v for k, v in wan_state_dict(dit).items()}, tmp_path / "dit.pth")
    save_umt5(tiny_umt5(np.random.default_rng(seed), layers=2, d_model=64, vocab=1500),
              tmp_path / "t5.safetensors", "hf")
    np.save(tmp_path / "c.npy", torch.randn(5, 64, generator=gen).numpy())
    return ["--dit", tmp_path / "dit.pth", "--vae", VAE, "--t5", tmp_path / "t5.safetensors",
            "--tokenizer", TOKENIZER]


def frames_y(path):
    """The Y planes of a .y4m, one array per frame."""
    raw = path.read_bytes()
    header, _, body = raw.partition(b"\n")
    fields = dict((f[:1], f[1:]) for f in header.split()[1:])
    w, h = int(fields[b"W"]), int(fields[b"H"])
    size = w * h * 3 // 2
    chunks = body.split(b"FRAME\n")[1:]
    assert all(len(c) == size for c in chunks), "truncated frame"
    return w, h, [np.frombuffer(c[: w * h], np.uint8).reshape(h, w) for c in chunks]


def test_generate_composes_the_stages(td_cli, tmp_path, seed):
    files = model_set(tmp_path, seed)
    common = ["--context-from", tmp_path / "c.npy", "--size", "32x16", "--steps", 2, "--seed", seed]
    p = run_td(td_cli, "generate", *files, *common, "--frames", 6, "--out", tmp_path / "a.y4m", "--json")
    stats = json.loads(p.stdout)
    w, h, ours = frames_y(tmp_path / "a.y4m")
    assert (w, h, len(ours)) == (32, 16, 6), "exactly the frames asked for"
    assert stats["frames"] == 6 and {"denoise", "decode"} <= set(stats["stages"])
    assert "denoise" in p.stderr and "done" in p.stderr, "progress line on stderr"

    # The same clip through the stage-level CLI (9 = the 1 + 4k frames the
    # VAE makes for 6); frames differ only by the RGB24 rounding in between.
    run_td(td_cli, "t2v", "--dit", tmp_path / "dit.pth", "--vae", VAE, *common, "--frames", 9,
           "--out", tmp_path / "ref.y4m")
    _, _, ref = frames_y(tmp_path / "ref.y4m")
    worst = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(ours, ref[:6]))
    print(f"generate vs t2v+vae: worst luma difference {worst}")
    assert worst <= 2


def test_prompt_path_composes_tokenizer_and_encoder(td_cli, tmp_path, seed):
    """--prompt gives exactly the clip of the embedding that tokenize (with
    Wan's cleaning) and encode-text make of the same prompt."""
    files = model_set(tmp_path, seed)
    prompt = "  a red circle &amp; a blue\tsquare   move right  "
    common = [*files, "--size", "32x16", "--steps", 2, "--frames", 5, "--seed", seed]
    run_td(td_cli, "generate", *common, "--prompt", prompt, "--out", tmp_path / "p.y4m")
    ids = run_td(td_cli, "tokenize", "--tokenizer", TOKENIZER, "--clean", prompt).stdout.strip()
    run_td(td_cli, "encode-text", "--t5", tmp_path / "t5.safetensors", "--ids", ids,
           "--out", tmp_path / "emb.npy")
    run_td(td_cli, "generate", *common, "--context-from", tmp_path / "emb.npy", "--out", tmp_path / "e.y4m")
    assert (tmp_path / "p.y4m").read_bytes() == (tmp_path / "e.y4m").read_bytes()


def test_generate_is_deterministic_per_seed(td_cli, tmp_path, seed):
    files = model_set(tmp_path, seed)
    common = [*files, "--context-from", tmp_path / "c.npy", "--size", "32x16", "--steps", 1, "--frames", 5]
    for name, s in (("a", seed), ("b", seed), ("c", seed + 1)):
        run_td(td_cli, "generate", *common, "--seed", s, "--out", tmp_path / f"{name}.y4m")
    a, b, c = ((tmp_path / f"{n}.y4m").read_bytes() for n in "abc")
    assert a == b, "same seed, same clip"
    assert a != c, "another seed, another clip"


def test_generate_errors_are_one_line(td_cli, tmp_path, seed):
    files = model_set(tmp_path, seed)
    np.save(tmp_path / "c16.npy", np.ones((3, 16), np.float32))
    cases = [
        (["--context-from", tmp_path / "c16.npy"], "context_dim 16"),
        (["--context-from", tmp_path / "c.npy", "--size", "40x16"], "nearest valid sizes are 32x16 and 48x16"),
        (["--context-from", tmp_path / "c.npy", "--steps", 5], "steps 5"),
        (["--context-from", tmp_path / "c.npy", "--vae", tmp_path / "c.npy"], "c.npy"),
    ]
    for extra, msg in cases:
        p = run_td(td_cli, "generate", *files, "--frames", 5, "--size", "32x16", *extra,
                   "--out", tmp_path / "x.y4m", check=False)
        assert p.returncode != 0 and msg in p.stderr, (extra, p.stderr)


def test_encode_text_prompt_uses_sentencepiece_ids(td_cli, tmp_path, seed):
    """encode-text --prompt = encode-text --ids of sentencepiece's ids for the
    prompt after Wan's cleaning (html.unescape twice, whitespace collapsed)."""
    import html
    import re

    import sentencepiece as spm
    model_set(tmp_path, seed)
    prompt = "  the  &amp;lt;red&amp;gt; circle\t moves   right  "
    clean = re.sub(r"\s+", " ", html.unescape(html.unescape(prompt))).strip()
    ids = spm.SentencePieceProcessor(model_file=str(TOKENIZER)).encode(clean) + [1]
    t5 = tmp_path / "t5.safetensors"
    run_td(td_cli, "encode-text", "--t5", t5, "--tokenizer", TOKENIZER, "--prompt", prompt,
           "--out", tmp_path / "p.npy")
    run_td(td_cli, "encode-text", "--t5", t5, "--ids", " ".join(map(str, ids)), "--out", tmp_path / "i.npy")
    assert np.array_equal(np.load(tmp_path / "p.npy"), np.load(tmp_path / "i.npy"))
