"""umT5 encoder parity: `turbodiff encode-text` vs transformers' UMT5EncoderModel.

A fresh tiny random encoder each run, saved in transformers/ComfyUI's
safetensors layout and in Wan's .pth layout, f32 and bf16; several id
sequences of different lengths, some past 128 tokens so the far (log-spaced
and clamped) position buckets are used. The reference masks the padding at
512 and keeps the real rows, zero-padded, as Wan's pipeline does.
"""
import sys
import pathlib

import numpy as np
import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from conftest import rel_l2, run_td  # noqa: E402
from umt5_ref import TEXT_LEN, reference, round_to_bf16, save, tiny_model  # noqa: E402

LENGTHS = (1, 7, 64, 150, 300)


def encode(td_cli, path, ids, out):
    run_td(td_cli, "encode-text", "--t5", path, "--ids", " ".join(map(str, ids)), "--out", out)
    return np.load(out)


def id_sets(rng, vocab):
    return [list(rng.integers(0, vocab, size=n)) for n in LENGTHS]


@pytest.mark.parametrize("layout", ["hf", "wan"])
def test_umt5_f32(td_cli, seed, tmp_path, layout):
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = tiny_model(rng, layers=int(rng.integers(2, 5)))
    path = tmp_path / ("enc.safetensors" if layout == "hf" else "enc.pth")
    save(model, path, layout)
    for ids in id_sets(rng, model.config.vocab_size):
        ours = encode(td_cli, path, ids, tmp_path / "emb.npy")
        ref = reference(model, ids)
        assert ours.shape == (TEXT_LEN, model.config.d_model) and ours.dtype == np.float32
        assert not ours[len(ids):].any(), "rows past the real tokens must be zeros"
        err = rel_l2(ours, ref)
        print(f"{layout} f32 n={len(ids)}: rel L2 {err:.2e}")
        assert err < 1e-5, f"{layout} n={len(ids)}: rel L2 {err:.3e}"


@pytest.mark.parametrize("layout", ["hf", "wan"])
def test_umt5_bf16(td_cli, seed, tmp_path, layout):
    """bf16 weights are read as stored and computed with in f32: the
    reference is transformers in f32 on the same bf16-rounded weights, so the
    issue's 1e-2 bound is met with f32 rounding to spare. (transformers run
    wholly in bf16 is itself ~1e-2 off its f32 run: its activations are bf16.)"""
    rng = np.random.default_rng(seed)
    model = round_to_bf16(tiny_model(rng))
    path = tmp_path / ("enc.safetensors" if layout == "hf" else "enc.pth")
    save(model, path, layout, dtype=torch.bfloat16)
    for ids in id_sets(rng, model.config.vocab_size):
        ours = encode(td_cli, path, ids, tmp_path / "emb.npy")
        err = rel_l2(ours, reference(model, ids))
        print(f"{layout} bf16 n={len(ids)}: rel L2 {err:.2e}")
        assert err < 1e-5, f"{layout} n={len(ids)}: rel L2 {err:.3e}"


def test_umt5_errors(td_cli, seed, tmp_path):
    rng = np.random.default_rng(seed)
    model = tiny_model(rng, layers=2)
    path = tmp_path / "enc.safetensors"
    save(model, path, "hf")
    vocab = model.config.vocab_size
    p = run_td(td_cli, "encode-text", "--t5", path, "--ids", f"1 {vocab}", "--out",
               tmp_path / "e.npy", check=False)
    assert p.returncode != 0 and "outside the vocabulary" in p.stderr
    p = run_td(td_cli, "encode-text", "--t5", path, "--ids", " ".join(["1"] * (TEXT_LEN + 1)),
               "--out", tmp_path / "e.npy", check=False)
    assert p.returncode != 0 and str(TEXT_LEN) in p.stderr


def test_umt5_cache_dir(td_cli, seed, tmp_path):
    """--cache-dir serves the stored entry (proved by planting a different,
    correctly checksummed one), and a corrupt entry is recomputed."""
    import hashlib

    rng = np.random.default_rng(seed)
    model = tiny_model(rng, layers=2)
    path = tmp_path / "enc.safetensors"
    save(model, path, "hf")
    cache = tmp_path / "cache"
    cache.mkdir()
    ids = " ".join(map(str, rng.integers(0, model.config.vocab_size, size=20)))
    run_td(td_cli, "encode-text", "--t5", path, "--ids", ids, "--out", tmp_path / "a.npy",
           "--cache-dir", cache)
    fresh = np.load(tmp_path / "a.npy")
    assert rel_l2(fresh[:20], reference(model, [int(i) for i in ids.split()])[:20]) < 1e-5
    (entry,) = cache.iterdir()
    raw = entry.read_bytes()
    head, body = raw[:56], raw[56:-32]
    assert head[:8] == b"TDEMB001" and np.frombuffer(body, np.float32).size == fresh.size
    planted = (2 * np.frombuffer(body, np.float32)).astype(np.float32).tobytes()
    entry.write_bytes(head + planted + hashlib.sha256(head + planted).digest())
    run_td(td_cli, "encode-text", "--t5", path, "--ids", ids, "--out", tmp_path / "b.npy",
           "--cache-dir", cache)
    assert np.array_equal(np.load(tmp_path / "b.npy"), 2 * fresh), "cache entry not used"
    entry.write_bytes(head + planted + bytes(32))
    run_td(td_cli, "encode-text", "--t5", path, "--ids", ids, "--out", tmp_path / "c.npy",
           "--cache-dir", cache)
    assert np.array_equal(np.load(tmp_path / "c.npy"), fresh), "corrupt entry served"
    assert len(list(cache.iterdir())) == 1, "temporary files left behind"
