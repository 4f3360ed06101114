#!/usr/bin/env python3
"""Generate the FFmpeg patch series from this repository.

    tools/ffmpeg/make-patches.py [--check] [--series 8.1,9.0] [--src DIR] [--out DIR]

For each release series, the newest build-ffmpeg/src/ffmpeg_<series>.*.orig.tar.*
(Debian's copy of the release tarball; tools/ffmpeg/get-ffmpeg-source.sh
fetches it) is unpacked into a temporary git repository and committed as is.
Three commits follow, each built from files of this repository:

  0001  libavfilter/*.[ch] (the filter sources, copied as they are), the
        lines of configure-snippets/libturbodiff.sh, patches/src/Makefile and
        patches/src/allfilters.c, the Changelog entry (patches/src/Changelog)
        and the libavfilter minor version bump
  0002  patches/src/doc/*.texi into doc/filters.texi
  0003  patches/src/fate/filter-video.mak into tests/fate/filter-video.mak
        and the reference files patches/src/fate/ref/*

and `git format-patch` writes them to patches/ffmpeg-<series>/. Commit
messages are patches/src/000N.msg. Identity and dates are fixed, so the output
depends only on those inputs: --check regenerates into a temporary directory
and fails, showing the difference, when the committed series differs.
patches/ffmpeg-<series>/BASE names the tarball the committed series was made
from. Debian's archive moves on to newer point releases: against another
tarball than BASE, --check compares what this repository puts into the
patches (every added line, in order, and the messages), not FFmpeg's own
context lines, which the build then proves still apply.

A piece file holds blocks: a line "#@ before TEXT" (or "#@ after TEXT")
starts one, and the lines up to the next such line are inserted before (after)
the one line of the target file that starts with TEXT. Lines starting with
"#@#" are comments about the piece, never inserted.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIECES = os.path.join(ROOT, "patches", "src")
AUTHOR = "The turbodiff developers"
# Fixed, so regenerating gives byte-identical files; git send-email (or the
# submitter's own git am / commit --amend --reset-author) sets the real date.
DATE = "2026-12-06T00:00:00+0000"


class PieceError(Exception):
    pass


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def blocks(piece):
    """[(mode, anchor, [lines])] of a piece file."""
    out = []
    for line in read(piece).splitlines():
        if line.startswith("#@#"):
            continue
        m = re.match(r"#@ (before|after) (.+)$", line)
        if m:
            out.append((m.group(1), m.group(2).rstrip(), []))
        elif out:
            out[-1][2].append(line)
        elif line.strip():
            raise PieceError(f"{piece}: text before the first '#@ before/after' line: {line!r}")
    return out


def insert(tree, target, piece):
    """Insert the blocks of piece into target (a path inside tree)."""
    path = os.path.join(tree, target)
    lines = read(path).split("\n")
    for mode, anchor, text in blocks(piece):
        at = [i for i, l in enumerate(lines)
              if l.startswith(anchor) and not re.match(r"\w", l[len(anchor):len(anchor) + 1])]
        if len(at) != 1:
            raise PieceError(f"{os.path.relpath(piece, ROOT)}: '{anchor}' occurs {len(at)} times "
                             f"in {target}, expected once")
        i = at[0] + (mode == "after")
        lines[i:i] = text
    write(path, "\n".join(lines))


def bump_minor(tree):
    """LIBAVFILTER_VERSION_MINOR + 1 and MICRO back to 100, columns kept."""
    path = os.path.join(tree, "libavfilter", "version.h")
    text = read(path)

    def sub(name, value, text):
        pat = re.compile(r"(#define LIBAVFILTER_VERSION_%s\s+)(\d+)" % name)
        m = pat.search(text)
        if not m:
            raise PieceError(f"libavfilter/version.h has no LIBAVFILTER_VERSION_{name}")
        new = str(value(int(m.group(2))))
        width = len(m.group(1)) + len(m.group(2))
        head = m.group(1).rstrip()
        return text[:m.start()] + head + new.rjust(width - len(head)) + text[m.end():]

    text = sub("MINOR", lambda v: v + 1, text)
    text = sub("MICRO", lambda v: 100, text)
    write(path, text)


def changelog(tree):
    """The entry under "version <next>:", which is added when missing."""
    path = os.path.join(tree, "Changelog")
    lines = read(path).split("\n")
    entry = read(os.path.join(PIECES, "Changelog")).rstrip("\n").split("\n")
    first = next((i for i, l in enumerate(lines) if l.startswith("version ")), None)
    if first is None:
        raise PieceError("Changelog has no 'version ...:' line")
    if lines[first] == "version <next>:":
        lines[first + 1:first + 1] = entry
    else:
        lines[first:first] = ["version <next>:"] + entry + ["", ""]
    write(path, "\n".join(lines))


def patch_0001(tree):
    for f in sorted(glob.glob(os.path.join(ROOT, "libavfilter", "*.[ch]"))):
        shutil.copyfile(f, os.path.join(tree, "libavfilter", os.path.basename(f)))
    changelog(tree)
    insert(tree, "configure", os.path.join(ROOT, "configure-snippets", "libturbodiff.sh"))
    insert(tree, "libavfilter/Makefile", os.path.join(PIECES, "Makefile"))
    insert(tree, "libavfilter/allfilters.c", os.path.join(PIECES, "allfilters.c"))
    bump_minor(tree)


def patch_0002(tree):
    for piece in sorted(glob.glob(os.path.join(PIECES, "doc", "*.texi"))):
        insert(tree, "doc/filters.texi", piece)


def patch_0003(tree):
    insert(tree, "tests/fate/filter-video.mak", os.path.join(PIECES, "fate", "filter-video.mak"))
    for ref in sorted(glob.glob(os.path.join(PIECES, "fate", "ref", "*"))):
        shutil.copyfile(ref, os.path.join(tree, "tests", "ref", "fate", os.path.basename(ref)))


STEPS = [("0001.msg", patch_0001), ("0002.msg", patch_0002), ("0003.msg", patch_0003)]


def git(tree, *args, date=DATE):
    env = dict(os.environ, GIT_AUTHOR_NAME=AUTHOR, GIT_AUTHOR_EMAIL="",
               GIT_COMMITTER_NAME=AUTHOR, GIT_COMMITTER_EMAIL="",
               GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date,
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, HOME=tree)
    return subprocess.run(["git", "-c", "core.abbrev=12", "-c", "core.autocrlf=false", "-c", "gc.auto=0",
                           "-c", "core.excludesFile=" + os.devnull, *args],
                          cwd=tree, env=env, check=True, capture_output=True, text=True).stdout


def tarball(src, series):
    found = glob.glob(os.path.join(src, f"ffmpeg_{series}.*.orig.tar.*"))
    found = [f for f in found if not f.endswith(".asc")]
    if not found:
        raise PieceError(f"no ffmpeg_{series}.*.orig.tar.* in {src}: run "
                         f"tools/ffmpeg/get-ffmpeg-source.sh {src} (or make ffmpeg) first")
    key = lambda f: [int(x) for x in re.findall(r"\d+", os.path.basename(f).split(".orig")[0])]
    return max(found, key=key)


def generate(series, src, out, work):
    tree = os.path.join(work, series)
    os.makedirs(tree)
    tb = tarball(src, series)
    subprocess.run(["tar", "xf", tb, "-C", tree, "--strip-components=1"], check=True)
    git(tree, "init", "-q")
    git(tree, "add", "-A", "-f")
    git(tree, "commit", "-q", "-m", "release " + os.path.basename(tb))
    for msg, step in STEPS:
        step(tree)
        git(tree, "add", "-A", "-f")
        git(tree, "commit", "-q", "-F", os.path.join(PIECES, msg))
    os.makedirs(out, exist_ok=True)
    for old in glob.glob(os.path.join(out, "*.patch")):
        os.remove(old)
    git(tree, "format-patch", "-q", "--zero-commit", "--no-signature", "--diff-algorithm=myers",
        "-o", out, "HEAD~%d" % len(STEPS))
    return tb


def our_lines(patch_dir):
    """Per patch file: its lines that come from this repository (the
    message, file names and every added line), not FFmpeg's context."""
    out = {}
    for name in sorted(os.listdir(patch_dir)):
        if not name.endswith(".patch"):
            continue
        keep, body = [], False
        for line in read(os.path.join(patch_dir, name)).splitlines():
            if line.startswith("diff --git"):
                body = True
            if not body and not re.match(r"^ \S.*\|\s+\d+|^ \d+ files? changed", line):
                keep.append(line)          # headers and message, not the diffstat
            elif line.startswith("diff --git") or (line.startswith("+") and not line.startswith("+++")):
                keep.append(line)
        out[name] = keep
    return out


def compare(series, committed, out, tarball):
    """0 when the committed series matches a fresh generation (exactly, or
    in its own lines when generated from another tarball than BASE)."""
    base = os.path.join(committed, "BASE")
    recorded = read(base).strip() if os.path.exists(base) else None
    if recorded == os.path.basename(tarball):
        diff = subprocess.run(["diff", "-ruN", "-x", "BASE", committed, out], capture_output=True,
                              text=True)
        if diff.returncode:
            print(diff.stdout, end="")
        return diff.returncode
    if our_lines(committed) == our_lines(out):
        print(f"make-patches: patches/ffmpeg-{series} was made from {recorded}; against "
              f"{os.path.basename(tarball)} its own lines match (context from FFmpeg not compared)")
        return 0
    for name, lines in our_lines(out).items():
        if our_lines(committed).get(name) != lines:
            print(f"make-patches: {name}: the lines from this repository differ")
    return 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1].strip(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true",
                    help="fail when patches/ffmpeg-<series>/ differs from a fresh generation")
    ap.add_argument("--series", default="8.1,9.0")
    ap.add_argument("--src", default=os.path.join(ROOT, "build-ffmpeg", "src"),
                    help="directory of the Debian orig tarballs (default build-ffmpeg/src)")
    ap.add_argument("--out", help="write patches to OUT/ffmpeg-<series> (default patches/)")
    args = ap.parse_args()
    status = 0
    with tempfile.TemporaryDirectory(prefix="turbodiff-patches-") as work:
        for series in args.series.split(","):
            committed = os.path.join(ROOT, "patches", "ffmpeg-" + series)
            if args.check:
                out = os.path.join(work, "out", "ffmpeg-" + series)
            else:
                out = os.path.join(args.out or os.path.join(ROOT, "patches"), "ffmpeg-" + series)
            try:
                tb = generate(series, args.src, out, work)
            except (PieceError, subprocess.CalledProcessError) as e:
                detail = getattr(e, "stderr", "") or ""
                print(f"make-patches: {series}: {e}{detail}", file=sys.stderr)
                return 1
            if args.check:
                if compare(series, committed, out, tb):
                    print(f"make-patches: patches/ffmpeg-{series} is out of date with libavfilter/ "
                          f"and its pieces: run tools/ffmpeg/make-patches.py and commit", file=sys.stderr)
                    status = 1
                else:
                    print(f"make-patches: patches/ffmpeg-{series} matches ({os.path.basename(tb)})")
            else:
                write(os.path.join(out, "BASE"), os.path.basename(tb) + "\n")
                print(f"make-patches: wrote {os.path.relpath(out)} from {os.path.basename(tb)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
