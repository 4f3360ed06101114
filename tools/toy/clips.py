"""Procedural clips for turbodiff's default model: one shape of a named
colour moving (left, right, up, down) or changing size (grows, shrinks) over
a plain background of another named colour, with its caption, e.g.
"a red circle moves right on a blue background".

Every clip is a pure function of its seed, so a dataset is a range of seeds.
numpy only: the checker and the tests use it without torch.
"""
import re

import numpy as np

COLOURS = {
    "red": (220, 40, 40), "orange": (250, 140, 20), "yellow": (240, 220, 40),
    "green": (40, 180, 60), "cyan": (40, 210, 220), "blue": (40, 70, 220),
    "magenta": (210, 50, 200), "white": (245, 245, 245), "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("left", "right", "up", "down", "grows", "shrinks")

SIZE, FRAMES = 64, 17


def caption(colour, shape, motion, background):
    verb = motion if motion in ("grows", "shrinks") else f"moves {motion}"
    return f"a {colour} {shape} {verb} on a {background} background"


CAPTION = re.compile(r"a (\w+) (\w+) (?:moves (left|right|up|down)|(grows|shrinks)) on a (\w+) background")


def parse(text):
    """caption -> (colour, shape, motion, background); ValueError if it is
    not one of ours."""
    m = CAPTION.fullmatch(" ".join(text.lower().split()))
    if not m or m[1] not in COLOURS or m[5] not in COLOURS or m[2] not in SHAPES:
        raise ValueError(f"not a clip caption: {text!r}")
    return m[1], m[2], m[3] or m[4], m[5]


def attributes(seed):
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    colour, background = rng.choice(len(names), 2, replace=False)
    return (names[colour], SHAPES[rng.integers(len(SHAPES))], MOTIONS[rng.integers(len(MOTIONS))],
            names[background])


def _mask(shape, cx, cy, r, size):
    y, x = np.mgrid[0:size, 0:size] + 0.5
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    if shape == "square":
        return (np.abs(x - cx) <= r * 0.85) & (np.abs(y - cy) <= r * 0.85)
    # triangle pointing up, base at cy + r/2, apex at cy - r
    top, bottom = cy - r, cy + r * 0.6
    half = (y - top) / (bottom - top) * r
    return (y >= top) & (y <= bottom) & (np.abs(x - cx) <= half)


def render(colour, shape, motion, background, seed=0, size=SIZE, frames=FRAMES):
    """uint8 [frames, size, size, 3]."""
    rng = np.random.default_rng(seed + 1_000_003)
    s = size / 64
    travel = 26 * s
    r = rng.uniform(7, 10) * s
    cx, cy = rng.uniform(0.35, 0.65) * size, rng.uniform(0.35, 0.65) * size
    dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}.get(motion, (0, 0))
    r0, r1 = {"grows": (5 * s, 15 * s), "shrinks": (15 * s, 5 * s)}.get(motion, (r, r))
    out = np.empty((frames, size, size, 3), np.uint8)
    for f in range(frames):
        a = f / (frames - 1) - 0.5
        m = _mask(shape, cx + dx * travel * a, cy + dy * travel * a, r0 + (r1 - r0) * (a + 0.5), size)
        out[f] = COLOURS[background]
        out[f][m] = COLOURS[colour]
    return out


def clip(seed, size=SIZE, frames=FRAMES):
    """(caption, uint8 [frames, size, size, 3]) of one seed."""
    attrs = attributes(seed)
    return caption(*attrs), render(*attrs, seed=seed, size=size, frames=frames)


def all_captions():
    names = list(COLOURS)
    return [caption(c, s, m, b) for c in names for s in SHAPES for m in MOTIONS for b in names if b != c]
