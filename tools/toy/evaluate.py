"""Render fixed prompt/seed pairs of the toy domain through the built ffmpeg
(the turbodiff source filter, default model unless --model) and check each
clip with tools/toy/checker.py: the share that shows the named colour,
background and motion.

    python tools/toy/evaluate.py --ffmpeg build-ffmpeg/minimal-8.1.2/ffmpeg --n 50 --min-pass 0.8

Also renders the first pair twice and requires identical frames. Exit 0
when the pass rate reaches --min-pass and the repeat is identical.
"""
import argparse
import concurrent.futures
import pathlib
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import checker  # noqa: E402
import clips    # noqa: E402


def pairs(n):
    """n (prompt, seed) pairs spread over the domain, the same every run."""
    caps = clips.all_captions()
    rng = np.random.default_rng(2025)
    return [(caps[i], int(s)) for i, s in zip(rng.choice(len(caps), n, replace=False),
                                               rng.integers(0, 2**31, n))]


def render(ffmpeg, model, prompt, seed):
    opts = f"prompt='{prompt}':seed={seed}" + (f":model={model}" if model else "")
    out = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                          f"turbodiff={opts}", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, timeout=300)
    if out.returncode:
        raise RuntimeError(f"ffmpeg failed for {prompt!r} seed {seed}: {out.stderr.decode()[-500:]}")
    return out.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ffmpeg", required=True)
    ap.add_argument("--model", help="model directory (default: the default model)")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--size", default="64x64", help="the model's frame size")
    ap.add_argument("--min-pass", type=float, default=0.8)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    t0 = time.time()
    todo = pairs(a.n)
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
        raws = list(ex.map(lambda p: render(a.ffmpeg, a.model, *p), todo))
    passed = 0
    for (prompt, seed), raw in zip(todo, raws):
        frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
        ok, report = checker.check(frames, prompt)
        passed += ok
        if not ok:
            print(f"FAIL {prompt!r} seed {seed}: found {report['found']}")
    again = render(a.ffmpeg, a.model, *todo[0])
    same = again == raws[0]
    rate = passed / len(todo)
    print(f"toy model through ffmpeg: {passed}/{len(todo)} clips pass ({rate:.0%}), "
          f"repeat {'identical' if same else 'DIFFERENT'}, {time.time() - t0:.0f} s")
    sys.exit(0 if rate >= a.min_pass and same else 1)


if __name__ == "__main__":
    main()
