"""Does a clip show what its caption says? For generated clips of the toy
domain (tools/toy/clips.py): finds the background colour (the border's
median), the shape (pixels far from the background), its colour (their
median, nearest named colour), and its motion (the trend of the centroid,
or of the area for grows/shrinks) and compares each with the caption.

    python tools/toy/checker.py --prompt "a red circle moves right on a blue background" clip.y4m
    ffmpeg ... -f rawvideo -pix_fmt rgb24 - | python tools/toy/checker.py --prompt ... --size 64x64 -

Exit status 0 when all three attributes match.
"""
import argparse
import sys

import numpy as np

from clips import COLOURS, parse

PALETTE = np.array(list(COLOURS.values()), np.float64)
NAMES = list(COLOURS)
FAR = 80.0          # RGB distance from the background that marks the shape
MIN_SHIFT = 4.0     # pixels the centroid must travel to count as moving
MIN_GROWTH = 1.4    # area ratio last/first (or first/last) for grows/shrinks


def nearest(rgb):
    return NAMES[int(np.argmin(((PALETTE - rgb) ** 2).sum(1)))]


def analyse(frames):
    """frames uint8 [T, H, W, 3] -> dict(background, colour, motion, ...)."""
    v = frames.astype(np.float64)
    T, H, W, _ = v.shape
    border = np.concatenate([v[:, 0], v[:, -1], v[:, :, 0], v[:, :, -1]], axis=1).reshape(-1, 3)
    bg = np.median(border, axis=0)
    far = np.sqrt(((v - bg) ** 2).sum(-1)) > FAR
    found = far.reshape(T, -1).sum(1) >= 4
    out = {"background": nearest(bg), "colour": None, "motion": None}
    if found.sum() < T // 2:
        return out
    out["colour"] = nearest(np.median(v[far], axis=0))
    y, x = np.mgrid[0:H, 0:W]
    t = np.flatnonzero(found)
    cx = np.array([x[far[i]].mean() for i in t])
    cy = np.array([y[far[i]].mean() for i in t])
    area = far.reshape(T, -1).sum(1)[t].astype(np.float64)
    # trends over the clip from least-squares lines, robust to a noisy frame
    span = t[-1] - t[0]
    sx, sy = (np.polyfit(t, c, 1)[0] * span for c in (cx, cy))
    growth = np.exp(np.polyfit(t, np.log(area), 1)[0] * span)
    out.update(dx=sx, dy=sy, growth=growth)
    if max(abs(sx), abs(sy)) >= MIN_SHIFT and max(growth, 1 / growth) < MIN_GROWTH * 1.5:
        out["motion"] = ("right" if sx > 0 else "left") if abs(sx) >= abs(sy) else ("down" if sy > 0 else "up")
    elif growth >= MIN_GROWTH:
        out["motion"] = "grows"
    elif growth <= 1 / MIN_GROWTH:
        out["motion"] = "shrinks"
    return out


def check(frames, prompt):
    """-> (ok, report): ok when colour, background and motion all match."""
    colour, _, motion, background = parse(prompt)
    a = analyse(frames)
    hits = {"colour": a["colour"] == colour, "background": a["background"] == background,
            "motion": a["motion"] == motion}
    return all(hits.values()), {"found": a, "match": hits}


def read_y4m(path):
    """8-bit 4:2:0 .y4m -> uint8 RGB [T, H, W, 3] (BT.601 limited range, as
    turbodiff and ffmpeg write it)."""
    data = open(path, "rb").read() if path != "-" else sys.stdin.buffer.read()
    header, _, body = data.partition(b"\n")
    f = {p[:1]: p[1:] for p in header.split()[1:]}
    W, H = int(f[b"W"]), int(f[b"H"])
    size = W * H * 3 // 2
    frames = []
    for chunk in body.split(b"FRAME")[1:]:
        raw = np.frombuffer(chunk[chunk.index(b"\n") + 1:][:size], np.uint8).astype(np.float64)
        y = raw[: W * H].reshape(H, W) - 16
        u = raw[W * H: W * H * 5 // 4].reshape(H // 2, W // 2).repeat(2, 0).repeat(2, 1) - 128
        v = raw[W * H * 5 // 4:].reshape(H // 2, W // 2).repeat(2, 0).repeat(2, 1) - 128
        rgb = np.stack([1.164 * y + 1.596 * v, 1.164 * y - 0.392 * u - 0.813 * v, 1.164 * y + 2.017 * u], -1)
        frames.append(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    return np.stack(frames)


def read_raw(path, w, h):
    data = open(path, "rb").read() if path != "-" else sys.stdin.buffer.read()
    return np.frombuffer(data, np.uint8).reshape(-1, h, w, 3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip", help=".y4m file, raw rgb24 (with --size), or - for stdin")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--size", help="WxH of raw rgb24 input")
    a = ap.parse_args()
    if a.size:
        w, h = (int(v) for v in a.size.split("x"))
        frames = read_raw(a.clip, w, h)
    else:
        frames = read_y4m(a.clip)
    ok, report = check(frames, a.prompt)
    print(("PASS " if ok else "FAIL ") + str(report))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
