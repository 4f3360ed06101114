"""The toy-domain checker (tools/toy/checker.py) on ground-truth clips from
tools/toy/clips.py: it must pass true captions, fail wrong ones, survive the
noise and blur a generator leaves, and read .y4m as turbodiff writes it."""
import pathlib
import subprocess
import sys

import numpy as np
import pytest

TOY = pathlib.Path(__file__).resolve().parents[2] / "tools" / "toy"
sys.path.insert(0, str(TOY))
import checker  # noqa: E402
import clips    # noqa: E402


def seeds(seed, n):
    return range(seed * 1000, seed * 1000 + n)


def test_true_captions_pass(seed):
    ok = sum(checker.check(clips.clip(s)[1], clips.clip(s)[0])[0] for s in seeds(seed, 300))
    print(f"true captions: {ok}/300 pass")
    assert ok >= 297


OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up", "grows": "shrinks", "shrinks": "grows"}


@pytest.mark.parametrize("wrong", ["colour", "background", "motion", "perpendicular"])
def test_wrong_captions_fail(seed, wrong):
    rng = np.random.default_rng(seed)
    names = list(clips.COLOURS)
    passed = 0
    for s in seeds(seed, 200):
        colour, shape, motion, bg = clips.attributes(s)
        frames = clips.render(colour, shape, motion, bg, seed=s)
        if wrong == "colour":
            colour = rng.choice([n for n in names if n not in (colour, bg)])
        elif wrong == "background":
            bg = rng.choice([n for n in names if n not in (colour, bg)])
        elif wrong == "motion":
            motion = OPPOSITE[motion]
        else:
            motion = {"left": "up", "right": "down", "up": "left", "down": "right",
                      "grows": "left", "shrinks": "up"}[motion]
        passed += checker.check(frames, clips.caption(colour, shape, motion, bg))[0]
    print(f"wrong {wrong}: {passed}/200 pass")
    assert passed <= 2


def degrade(frames, rng):
    """Box blur 3x3 and Gaussian noise (sigma 12): a soft, grainy render."""
    v = frames.astype(np.float64)
    pad = np.pad(v, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    blur = sum(pad[:, i:i + v.shape[1], j:j + v.shape[2]] for i in range(3) for j in range(3)) / 9
    return np.clip(blur + rng.normal(0, 12, v.shape), 0, 255).astype(np.uint8)


def test_robust_to_blur_and_noise(seed):
    rng = np.random.default_rng(seed)
    ok = sum(checker.check(degrade(clips.clip(s)[1], rng), clips.clip(s)[0])[0] for s in seeds(seed, 200))
    print(f"blurred and noisy: {ok}/200 pass")
    assert ok >= 190


def test_empty_and_static_clips_fail(seed):
    colour, shape, motion, bg = clips.attributes(seed)
    empty = np.broadcast_to(np.array(clips.COLOURS[bg], np.uint8), (17, 64, 64, 3)).copy()
    assert not checker.check(empty, clips.caption(colour, shape, motion, bg))[0]
    still = np.repeat(clips.render(colour, shape, motion, bg, seed=seed)[:1], 17, axis=0)
    assert not checker.check(still, clips.caption(colour, shape, motion, bg))[0]


def to_y4m(frames, path):
    """BT.601 limited-range 4:2:0, as turbodiff generate writes."""
    T, H, W, _ = frames.shape
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F16:1 Ip A1:1 C420jpeg\n".encode())
        for fr in frames.astype(np.float64):
            r, g, b = fr[..., 0], fr[..., 1], fr[..., 2]
            y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
            q = lambda c: c.reshape(H // 2, 2, W // 2, 2).mean((1, 3))
            u = 128 + (-37.797 * q(r) - 74.203 * q(g) + 112.0 * q(b)) / 255
            v = 128 + (112.0 * q(r) - 93.786 * q(g) - 18.214 * q(b)) / 255
            f.write(b"FRAME\n")
            for p in (y, u, v):
                f.write(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes())


def test_cli_reads_y4m(tmp_path, seed):
    cap, frames = clips.clip(seed)
    to_y4m(frames, tmp_path / "c.y4m")
    good = subprocess.run([sys.executable, TOY / "checker.py", "--prompt", cap, tmp_path / "c.y4m"],
                          capture_output=True, text=True)
    assert good.returncode == 0, good.stdout + good.stderr
    colour, shape, motion, bg = clips.parse(cap)
    bad = subprocess.run([sys.executable, TOY / "checker.py", "--prompt",
                          clips.caption(colour, shape, OPPOSITE[motion], bg), tmp_path / "c.y4m"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "FAIL" in bad.stdout


def test_manifest_says_what_the_model_draws():
    """The default model's turbodiff.json describes what it draws (the engine
    logs it when the model loads) as train.py writes it, naming the whole
    vocabulary, with example prompts that are captions it learnt."""
    import json
    import re

    import train
    manifest = json.loads((TOY.parents[1] / "models" / "toy" / "turbodiff.json").read_text())
    text = manifest["description"]
    assert text == train.DESCRIPTION
    for word in (*clips.COLOURS, *clips.SHAPES, *clips.MOTIONS):
        assert re.search(rf"\b{word}\b", text), word
    examples = re.findall(r'"([^"]+)"', text)
    assert len(examples) == 2
    for example in examples:
        clips.parse(example)
