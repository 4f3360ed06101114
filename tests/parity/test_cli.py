"""turbodiff generate as scripts and render farms use it: where the clip
goes (-o, --out -, refused extensions, --png-dir checked before any work),
--seed -1, progress lines in a log file, the order of `turbodiff --help`,
sampler options the sampler would not read refused before any work, and
--max-memory with the estimate --json prints, and the measured peak next to it.

The committed tiny model set (tests/data/pipeline, 64x32 x 5 frames) keeps
each run well under a second.
"""
import json
import pathlib
import random
import re
import subprocess

from conftest import run_td

MODEL = pathlib.Path(__file__).resolve().parents[1] / "data" / "pipeline"
GEN = ["generate", "--model", MODEL, "--prompt", "a red circle", "--steps", 1, "--threads", 1]
TI2V = ["generate", "--model", MODEL / "ti2v", "--prompt", "a red circle", "--threads", 1]


def test_o_is_out(td_cli, tmp_path):
    run_td(td_cli, *GEN, "-o", tmp_path / "a.y4m")
    run_td(td_cli, *GEN, "--out", tmp_path / "b.y4m")
    a = (tmp_path / "a.y4m").read_bytes()
    assert a.startswith(b"YUV4MPEG2 ") and a == (tmp_path / "b.y4m").read_bytes()


def test_out_dash_is_standard_output(td_cli, tmp_path):
    p = subprocess.run([str(td_cli), *map(str, GEN), "--out", "-"], capture_output=True,
                       cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr
    assert not (tmp_path / "-").exists(), "no file named '-'"
    run_td(td_cli, *GEN, "--out", tmp_path / "f.y4m")
    assert p.stdout == (tmp_path / "f.y4m").read_bytes()
    q = run_td(td_cli, *GEN, "--out", "-", "--json", check=False)
    assert q.returncode != 0 and "standard output" in q.stderr


def test_other_extensions_are_refused_before_work(td_cli, tmp_path):
    for name in ("x.mp4", "x.mkv", "x", "x.y4m.mp4", "clip.y4m/x"):
        p = run_td(td_cli, *GEN, "--out", tmp_path / name, check=False)
        assert p.returncode != 0, name
        assert ".y4m" in p.stderr and "--png-dir" in p.stderr and ".npy" in p.stderr, p.stderr
        assert "denoise" not in p.stderr, "refused before generating"
        assert not (tmp_path / name).exists(), f"nothing written to {name}"
    run_td(td_cli, *GEN, "--out", tmp_path / "UPPER.Y4M")


def test_png_dir_missing_fails_before_generating(td_cli, tmp_path):
    p = run_td(td_cli, *GEN, "--png-dir", tmp_path / "missing", check=False)
    assert p.returncode != 0 and "missing" in p.stderr and "must exist" in p.stderr, p.stderr
    assert "denoise" not in p.stderr and "done" not in p.stderr, "refused before generating"
    (tmp_path / "file").write_text("x")
    p = run_td(td_cli, *GEN, "--png-dir", tmp_path / "file", check=False)
    assert p.returncode != 0 and "not a directory" in p.stderr, p.stderr
    (tmp_path / "frames").mkdir()
    run_td(td_cli, *GEN, "--png-dir", tmp_path / "frames")
    assert len(list((tmp_path / "frames").glob("frame_*.png"))) == 5


def test_seed_minus_one_is_random_and_printed(td_cli, tmp_path):
    seeds = []
    for name in "ab":
        p = run_td(td_cli, *GEN, "--seed", -1, "--out", tmp_path / f"{name}.y4m", "--json")
        m = re.search(r"seed (\d+)", p.stderr)
        assert m, p.stderr
        seeds.append(int(m.group(1)))
        assert f'"seed": {seeds[-1]}' in p.stdout
        assert seeds[-1] < 2**32, "a 32-bit seed, as FFmpeg's random seeds"
    assert seeds[0] != seeds[1] and (tmp_path / "a.y4m").read_bytes() != (tmp_path / "b.y4m").read_bytes()
    # The printed seed gives the clip again.
    run_td(td_cli, *GEN, "--seed", seeds[0], "--out", tmp_path / "again.y4m")
    assert (tmp_path / "again.y4m").read_bytes() == (tmp_path / "a.y4m").read_bytes()
    for bad in ("-2", "x", "1e3", "18446744073709551616"):
        p = run_td(td_cli, *GEN, "--seed", bad, "--out", tmp_path / "c.y4m", check=False)
        assert p.returncode != 0 and "--seed" in p.stderr, (bad, p.stderr)


def test_progress_without_a_terminal_is_one_line_per_update(td_cli, tmp_path):
    p = run_td(td_cli, *GEN, "--out", tmp_path / "a.y4m")
    assert "\r" not in p.stderr, repr(p.stderr)
    lines = p.stderr.splitlines()
    assert any(re.match(r"turbodiff: denoise +1/1", ln) for ln in lines), lines
    assert any(ln.startswith("turbodiff: done in") for ln in lines), lines
    assert "" not in lines, "no blank lines"


def test_help_lists_generate_first_and_debug_last(td_cli):
    out = run_td(td_cli, "--help").stdout
    cmds = [ln.split(None, 1) for ln in out.splitlines() if ln.startswith("  ")]
    assert cmds[0][0] == "generate", cmds
    debug = [i for i, (_, summary) in enumerate(cmds) if summary.startswith("debug:")]
    assert debug and debug == list(range(len(cmds) - len(debug), len(cmds))), cmds


def test_options_the_sampler_would_not_read_are_refused(td_cli, tmp_path):
    # the tiny Wan2.1 set samples with rCM, the tiny TI2V-5B set with flow
    # matching; --sampler names one before the model loads
    cases = [([*GEN, "--flow-steps", 2], "--flow-steps is a flow matching option", "--sampler flow"),
             ([*GEN, "--sampler", "rcm", "--negative-prompt", "blur"], "--negative-prompt is a flow", "--sampler flow"),
             ([*GEN, "--sampler", "flow"], "--steps is an rCM option, but --sampler flow", "--sampler rcm"),
             ([*TI2V, "--sigma-max", 40], "--sigma-max is an rCM option, but this model", "--sampler rcm"),
             ([*TI2V, "--ode"], "--ode is an rCM option", "--sampler rcm")]
    for args, says, fix in cases:
        p = run_td(td_cli, *args, "--out", tmp_path / "x.y4m", check=False)
        assert p.returncode != 0 and says in p.stderr and fix in p.stderr, (args, p.stderr)
        assert "denoise" not in p.stderr and not (tmp_path / "x.y4m").exists(), "refused before generating"
    p = run_td(td_cli, *TI2V, "--flow-steps", 2, "--guidance", 3, "--out", tmp_path / "y.y4m")
    assert re.search(r"turbodiff: denoise +2/2", p.stderr), p.stderr
    p = run_td(td_cli, *GEN, "--sampler", "rcm", "--out", tmp_path / "z.y4m")
    assert re.search(r"turbodiff: denoise +1/1", p.stderr), p.stderr


def test_max_memory_refuses_before_generating_with_the_numbers(td_cli, tmp_path, seed):
    rng = random.Random(seed)
    w, h = 16 * rng.randint(4, 12), 16 * rng.randint(2, 6)
    frames = 1 + 4 * rng.randint(1, 4)
    size = ["--size", f"{w}x{h}", "--frames", frames]
    p = run_td(td_cli, *GEN, *size, "--png-dir", tmp_path, "--json")
    out = json.loads(p.stdout)
    est = out["estimate"]
    assert est["device"] == "cpu" and est["tokens"] == (1 + (frames - 1) // 4) * (h // 16) * (w // 16)
    assert est["peak_bytes"] == est["weights_bytes"] + est["working_bytes"] > 0
    assert est["forwards"] == 1 and est["seconds"] > 0 and est["flops"] > 0
    assert out["max_rss_bytes"] > est["peak_bytes"], "the process held the job's memory"
    # the backend's measured peak, counted as the estimate counts (test_estimate's
    # bounds); where text encoding is the peak the estimate is an upper bound, made
    # for 512 tokens where this prompt has a few
    ratio = est["peak_bytes"] / out["measured_peak_bytes"]
    if est["peak_stage"] == "text":
        assert 1.0 <= ratio <= 2.5, out
    else:
        assert 0.8 <= ratio <= 1.5, out
    need = est["peak_bytes"] + est["host_bytes"]
    # one byte short: refused before anything is written, naming the numbers
    p = run_td(td_cli, *GEN, *size, "--max-memory", need - 1, "--out", tmp_path / "x.y4m", check=False)
    assert p.returncode != 0 and not (tmp_path / "x.y4m").exists(), p.stderr
    assert f"{w}x{h} x {frames} frames needs about" in p.stderr and "max_memory is" in p.stderr, p.stderr
    assert "denoise" not in p.stderr, "refused before generating"
    # enough, written with a suffix
    run_td(td_cli, *GEN, *size, "--max-memory", f"{need / 2**20 + 1:.3f}Mi", "--out", tmp_path / "y.y4m")
    assert (tmp_path / "y.y4m").stat().st_size > 0
    p = run_td(td_cli, *GEN, "--max-memory", "8X", "--out", tmp_path / "z.y4m", check=False)
    assert p.returncode == 2 and "--max-memory" in p.stderr, p.stderr
    # by default the limit is the memory available: an absurd clip is refused
    p = run_td(td_cli, *GEN, "--size", "4096x4096", "--frames", 4093, "--out", tmp_path / "z.y4m",
               check=False)
    assert p.returncode != 0 and "is available" in p.stderr and "GiB" in p.stderr, p.stderr
    assert not (tmp_path / "z.y4m").exists()
