#!/usr/bin/env python3
"""Every command line the documentation shows must run as written.

    python3 tests/ffmpeg/doc_commands.py FFMPEG_BUILD_DIR TURBODIFF_CLI

Extracts the commands of README.md's ```sh blocks and of the filter docs'
@example blocks (patches/ffmpeg-8.1/0002-*.patch; the 9.0 series must carry
the same examples) and runs each with bash, under a timeout, with the built
ffmpeg, ffprobe and turbodiff first on PATH. A command is a logical line
(backslash continuations joined) whose first word is one of RUN_WORDS; the
rest (make, the build script) are how-to, not examples. The commands of one
block run in order in one fresh directory, so a later command may read what
an earlier one wrote.

Nothing in a command is rewritten (texinfo's @{ @} @@ become { } @, as the
rendered manual shows them). The names the docs use for the reader's own
files exist in each directory, as FIXTURES says: the model directories are
links to the committed tiny random model sets, the images and clips are
small test patterns. A command that runs until it is stopped (UNTIL_STOPPED)
must still be running after LIVE_SECONDS without an error, and then stop on
SIGINT. Fails naming each command that did not run.
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data")
RUN_WORDS = ("ffmpeg", "ffprobe", "turbodiff", "mkdir", "echo")
TIMEOUT = int(os.environ.get("TD_DOC_TIMEOUT", "300"))
LIVE_SECONDS = 12   # the sendcmd example changes the prompt after 10 s
UNTIL_STOPPED = ("loop=1",)

# name in the docs -> ("link", path under tests/data) or ("make", ffmpeg args)
FIXTURES = {
    "wan": ("link", "pipeline"),                      # a text-to-video model directory
    "TurboWan2.1-T2V-1.3B": ("link", "pipeline"),
    "wan-i2v": ("link", "pipeline/i2v"),              # an image-to-video (A14B pair) directory
    "TurboWan2.2-I2V-A14B": ("link", "pipeline/i2v"),
    "Wan2.2-TI2V-5B": ("link", "pipeline/ti2v"),        # text and image to video, 24 fps
    "Wan2.2-T2V-A14B": ("link", "pipeline/t2v_a14b"),   # a text-to-video expert pair
    "model.safetensors": ("link", "pipeline/dit.safetensors"),
    "dit.pth": ("link", "pipeline/dit.safetensors"),
    "umt5.safetensors": ("link", "pipeline/umt5.safetensors"),
    "vae.pth": ("link", "vae/vae_wan.pth"),
    "style.safetensors": ("link", "lora/tiny_kohya.safetensors"),  # a LoRA for the tiny DiT
    "still.png": ("make", ["-f", "lavfi", "-i", "testsrc2=s=64x32", "-frames:v", "1"]),
    "start.png": ("make", ["-f", "lavfi", "-i", "testsrc2=s=64x32", "-frames:v", "1"]),
    "clip.mp4": ("make", ["-f", "lavfi", "-i", "testsrc2=s=64x32:r=16:d=1", "-c:v", "mpeg4"]),
    "prompts.txt": ("text", "a red circle moves right on a blue background\n"
                            "a green square grows on a black background\n"),
}


def readme_blocks(path):
    """The ```sh blocks of a markdown file, as lists of lines."""
    blocks, cur = [], None
    for line in open(path, encoding="utf-8").read().splitlines():
        if cur is None and line.strip() == "```sh":
            cur = []
        elif cur is not None and line.strip() == "```":
            blocks.append(cur)
            cur = None
        elif cur is not None:
            cur.append(line)
    return blocks


def texi_blocks(patch):
    """The @example blocks the patch adds, as the rendered manual shows them."""
    blocks, cur = [], None
    for line in open(patch, encoding="utf-8").read().splitlines():
        if not line.startswith("+") or line.startswith("+++"):
            continue
        text = line[1:]
        if text.strip() == "@example":
            cur = []
        elif text.strip() == "@end example" and cur is not None:
            blocks.append(cur)
            cur = None
        elif cur is not None:
            cur.append(text.replace("@{", "{").replace("@}", "}").replace("@@", "@"))
    return blocks


def commands(lines):
    """Logical lines (continuations joined, as bash reads them) that run."""
    out, cur = [], ""
    for line in lines:
        cur = cur + "\n" + line if cur else line
        if line.endswith("\\"):
            continue
        words = cur.split()
        if words and words[0] in RUN_WORDS:
            out.append(cur)
        cur = ""
    return out


def make_fixtures(where, ffmpeg):
    for name, (kind, what) in FIXTURES.items():
        dst = os.path.join(where, name)
        if kind == "link":
            os.symlink(os.path.join(DATA, what), dst)
        elif kind == "text":
            with open(dst, "w") as f:
                f.write(what)
        else:
            subprocess.run([ffmpeg, "-v", "error", "-nostdin", *what, dst], check=True)


def run_live(cmd, cwd, env):
    """A command that generates until stopped: alive and quiet after
    LIVE_SECONDS, then it must stop on SIGINT as ffmpeg does on Ctrl-C."""
    p = subprocess.Popen(["bash", "-c", cmd], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        p.wait(LIVE_SECONDS)
        return f"ended after less than {LIVE_SECONDS} s (exit {p.returncode})", p.stderr.read()
    except subprocess.TimeoutExpired:
        pass
    os.killpg(p.pid, signal.SIGINT)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        return "did not stop within 30 s of SIGINT", p.communicate()[1]
    if re.search(r"error", err, re.I):
        return f"logged an error while running", err
    return None, err


def run_block(name, cmds, base, env, fixtures):
    where = tempfile.mkdtemp(prefix="block.", dir=base)
    for f in os.listdir(fixtures):
        os.symlink(os.path.join(fixtures, f), os.path.join(where, f))
    failed = 0
    for cmd in cmds:
        shown = " ".join(cmd.replace("\\\n", " ").split())
        if any(m in cmd for m in UNTIL_STOPPED) and "-t " not in cmd:
            why, err = run_live(cmd, where, env)
        else:
            try:
                r = subprocess.run(["bash", "-c", cmd], cwd=where, env=env, stdin=subprocess.DEVNULL,
                                   capture_output=True, text=True, timeout=TIMEOUT)
                why, err = (f"exit {r.returncode}" if r.returncode else None), r.stderr
            except subprocess.TimeoutExpired as e:
                why, err = f"still running after {TIMEOUT} s", (e.stderr or b"").decode(errors="replace")
        if why:
            failed += 1
            print(f"FAIL {name}: {shown}\n     {why}")
            for line in err.strip().splitlines()[-8:]:
                print(f"     | {line}")
        else:
            print(f"ok   {name}: {shown}")
    return failed


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    ffdir, cli = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    ffmpeg = os.path.join(ffdir, "ffmpeg")
    bindir = tempfile.mkdtemp(prefix="td-doc-commands.")
    try:
        for tool in (ffmpeg, os.path.join(ffdir, "ffprobe"), cli):
            os.symlink(tool, os.path.join(bindir, os.path.basename(tool)))
        env = dict(os.environ, PATH=bindir + os.pathsep + os.environ["PATH"])
        env.pop("TURBODIFF_MODEL_DIR", None)   # no model named: the default model
        fixtures = os.path.join(bindir, "fixtures")
        os.mkdir(fixtures)
        make_fixtures(fixtures, ffmpeg)

        series = {s: glob.glob(os.path.join(ROOT, "patches", s, "0002-*.patch"))
                  for s in ("ffmpeg-8.1", "ffmpeg-9.0")}
        docs = {s: texi_blocks(p[0]) for s, p in series.items() if len(p) == 1}
        failed = 0
        if len(docs) != 2 or docs["ffmpeg-8.1"] != docs["ffmpeg-9.0"]:
            print("FAIL the filter docs' examples differ between patches/ffmpeg-8.1 and -9.0")
            failed += 1
        blocks = [("README.md", b) for b in readme_blocks(os.path.join(ROOT, "README.md"))]
        blocks += [("filter docs", b) for b in docs.get("ffmpeg-8.1", [])]
        total = 0
        for name, lines in blocks:
            cmds = commands(lines)
            total += len(cmds)
            failed += run_block(name, cmds, bindir, env, fixtures)
        print(f"doc commands: {total - failed} of {total} ran as written")
        return 1 if failed or not total else 0
    finally:
        shutil.rmtree(bindir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
