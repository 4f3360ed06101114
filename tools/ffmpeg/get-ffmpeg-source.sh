#!/bin/bash
# Fetch Debian's FFmpeg source package (8.1.x and, if offered, 9.0.x) into a
# directory, without building it. Idempotent: an existing download is reused.
#
#   tools/ffmpeg/get-ffmpeg-source.sh [DEST]      (default: build-ffmpeg/src)
#
# Debian ships the upstream release tarball inside its source package, so this
# is how machines without access to ffmpeg.org get the sources. The deb-src
# entries are derived from the machine's own apt sources (same mirror URIs,
# suite sid, which carries the newest FFmpeg) and written to a separate file,
# /etc/apt/sources.list.d/turbodiff-src.sources, so the machine's own
# configuration is never edited. Needs root for that one file and apt-get update.
set -euo pipefail

dest=${1:-build-ffmpeg/src}
srcfile=/etc/apt/sources.list.d/turbodiff-src.sources
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

# The mirror URIs of the Debian archive the machine already uses (deb822 and
# one-line formats). Security and third-party repositories carry no sid.
mirrors() {
    { grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | sed 's/^URIs:[[:space:]]*//' | tr ' ' '\n' || true
      grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}' || true
    } | grep -E '/debian/?$' | sort -u || true
}

if [ ! -f "$srcfile" ]; then
    uris=$(mirrors | tr '\n' ' ')
    if [ -z "$uris" ]; then
        echo "get-ffmpeg-source: no Debian mirror found in /etc/apt sources" >&2
        exit 1
    fi
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    {
        echo "# Added by turbodiff tools/ffmpeg/get-ffmpeg-source.sh: FFmpeg sources only."
        echo "Types: deb-src"
        echo "URIs: $uris"
        echo "Suites: sid"
        echo "Components: main"
        [ -f "$keyring" ] && echo "Signed-By: $keyring"
    } > "$srcfile"
    apt-get update -qq
fi

# Newest offered version of a release series, e.g. "8.1" -> 7:8.1.2-1.
pick() {
    apt-cache showsrc ffmpeg 2>/dev/null | awk '/^Version:/ {print $2}' |
        grep -E "^([0-9]+:)?$1\.[0-9]+" | sort -V | tail -n 1 || true
}

got=0
for series in 8.1 9.0; do
    ver=$(pick "$series")
    if [ -z "$ver" ]; then
        echo "get-ffmpeg-source: Debian offers no ffmpeg $series.x source package" >&2
        continue
    fi
    upstream=${ver#*:}; upstream=${upstream%-*}
    if ls "$dest"/ffmpeg_"$upstream".orig.tar.* >/dev/null 2>&1; then
        echo "get-ffmpeg-source: ffmpeg $ver already in $dest"
    else
        # Only the upstream tarball matters; a missing Debian part is no failure.
        (cd "$dest" && apt-get source --download-only -qq "ffmpeg=$ver") || true
        if ! ls "$dest"/ffmpeg_"$upstream".orig.tar.* >/dev/null 2>&1; then
            echo "get-ffmpeg-source: could not download ffmpeg $ver" >&2
            continue
        fi
        echo "get-ffmpeg-source: downloaded ffmpeg $ver into $dest"
    fi
    got=1
done
[ "$got" = 1 ] || { echo "get-ffmpeg-source: no usable ffmpeg source" >&2; exit 1; }
ls "$dest"/ffmpeg_*.orig.tar.*
