#!/bin/bash
# Build FFmpeg with the turbodiff filters.
#
#   tools/ffmpeg/build-ffmpeg.sh [source] [--minimal|--full] [--builddir DIR] [-jN]
#
# source, one of:
#   --source DIR        an FFmpeg 8.1 (or 9.0) source tree you have; patched in place
#   --tarball FILE      a release tarball you have (ffmpeg-8.1.x.tar.xz)
#   --debian [SERIES]   Debian's source package, fetched with get-ffmpeg-source.sh
#                       (default; SERIES 8.1 or 9.0, default 8.1)
#   --download VERSION  the release tarball from ffmpeg.org (needs internet; only
#                       tried when asked)
# environment: FFMPEG_CONFIGURE_EXTRA, more flags for FFmpeg's configure
# configuration:
#   --minimal           what tests/ffmpeg and the docs' commands need, nothing
#                       else (default; libx264 when libx264-dev is installed)
#   --full              for users: plus libx264, libx265, libvpx, libsvtav1,
#                       libfreetype where their Debian dev packages are installed
#   --cuda / --no-cuda  libturbodiff with or without its CUDA backend (built
#                       when nvcc is found); default: with it for --full,
#                       without for --minimal (the tests' build, kept quick)
#
# libturbodiff is built from this checkout and installed under
# BUILDDIR/turbodiff-prefix; FFmpeg finds it through its turbodiff.pc
# (PKG_CONFIG_PATH) and runs against it through an rpath. The patch series in
# patches/ffmpeg-<series>/ wires the filters into configure, the filter list,
# the docs and FATE and adds the filter sources (tools/ffmpeg/make-patches.py
# generates it from libavfilter/). Re-runs reuse every step whose inputs did not
# change. Prints the path of the built ffmpeg on its last line.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
builddir=$root/build-ffmpeg
kind=debian series=8.1 arg= config=minimal jobs=$(nproc) cuda=

while [ $# -gt 0 ]; do
    case $1 in
    --source)   kind=source;   arg=$2; shift ;;
    --tarball)  kind=tarball;  arg=$2; shift ;;
    --download) kind=download; arg=$2; shift ;;
    --debian)   kind=debian
                if [ $# -gt 1 ] && [[ $2 =~ ^[0-9]+\.[0-9]+$ ]]; then series=$2; shift; fi ;;
    --minimal)  config=minimal ;;
    --full)     config=full ;;
    --cuda)     cuda=ON ;;
    --no-cuda)  cuda=OFF ;;
    --builddir) builddir=$2; shift ;;
    -j*)        jobs=${1#-j} ;;
    -h|--help)  sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "build-ffmpeg: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$builddir"
builddir=$(cd "$builddir" && pwd)
log() { echo "build-ffmpeg: $*" >&2; }

# 1. libturbodiff, installed where FFmpeg's configure will look.
prefix=$builddir/turbodiff-prefix
[ -n "$cuda" ] || { [ $config = full ] && cuda=ON || cuda=OFF; }
# (a build directory configured from engine/, as before the root
# CMakeLists.txt, starts over)
grep -qsx "CMAKE_HOME_DIRECTORY:INTERNAL=$root" "$builddir/turbodiff-build/CMakeCache.txt" ||
    rm -rf "$builddir/turbodiff-build/CMakeCache.txt" "$builddir/turbodiff-build/CMakeFiles"
cmake -S "$root" -B "$builddir/turbodiff-build" -DCMAKE_BUILD_TYPE=Release \
      -DTD_BUILD_TESTS=OFF -DTD_BUILD_BENCH=OFF \
      -DTD_CUDA=$cuda -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib >/dev/null
cmake --build "$builddir/turbodiff-build" -j"$jobs" --target turbodiff_static turbodiff_shared turbodiff >/dev/null
cmake --install "$builddir/turbodiff-build" >/dev/null
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}

# 2. The source tree.
extract() {  # tarball -> directory it unpacked to
    local tarball=$1 name
    name=$(tar tf "$tarball" | head -n 1 | cut -d/ -f1)
    if [ ! -f "$builddir/$name/configure" ]; then
        log "unpacking $(basename "$tarball")"
        tar xf "$tarball" -C "$builddir"
    fi
    echo "$builddir/$name"
}
case $kind in
source)
    [ -f "$arg/configure" ] && [ -d "$arg/libavfilter" ] ||
        { log "--source $arg: not an FFmpeg source tree"; exit 1; }
    src=$(cd "$arg" && pwd) ;;
tarball)
    [ -f "$arg" ] || { log "--tarball $arg: no such file"; exit 1; }
    src=$(extract "$arg") ;;
download)
    tarball=$builddir/src/ffmpeg-$arg.tar.xz
    mkdir -p "$builddir/src"
    if [ ! -f "$tarball" ]; then
        log "downloading https://ffmpeg.org/releases/ffmpeg-$arg.tar.xz"
        curl -fL --retry 2 -o "$tarball.part" "https://ffmpeg.org/releases/ffmpeg-$arg.tar.xz"
        mv "$tarball.part" "$tarball"
    fi
    src=$(extract "$tarball") ;;
debian)
    "$root/tools/ffmpeg/get-ffmpeg-source.sh" "$builddir/src" >&2
    tarball=$(ls "$builddir"/src/ffmpeg_"$series".*.orig.tar.xz 2>/dev/null | sort -V | tail -n 1)
    [ -n "$tarball" ] || { log "no Debian ffmpeg $series source"; exit 1; }
    src=$(extract "$tarball") ;;
esac
version=$(cat "$src/VERSION" 2>/dev/null || cat "$src/RELEASE")
major_minor=$(echo "$version" | grep -oE '^[0-9]+\.[0-9]+')
patchdir=$root/patches/ffmpeg-$major_minor
[ -d "$patchdir" ] || patchdir=$root/patches/ffmpeg-8.1
log "FFmpeg $version in $src, patches from $(basename "$patchdir")"

# 3. Patch: the series is the only change made to the tree (it adds the
# filter sources too). The patches applied are kept in the tree, so that a
# later series replaces them: the old ones are reverted first.
# Files the new series leaves as they were keep their time stamps, so that
# make rebuilds only what changed.
applied=$src/.turbodiff-series
touched() { sed -n 's|^+++ b/||p' "$@" | sort -u; }
if ! diff -rq "$patchdir" "$applied" >/dev/null 2>&1; then
    declare -A before=()
    if [ -d "$applied" ]; then
        for f in $(touched "$applied"/*.patch); do
            [ -f "$src/$f" ] && before[$f]="$(sha1sum < "$src/$f") $(stat -c %Y "$src/$f")"
        done
        for p in $(ls -r "$applied"/*.patch); do
            log "reverting $(basename "$p")"
            patch -p1 -R -s -d "$src" < "$p"
        done
        rm -rf "$applied"
    elif [ -e "$src/libavfilter/vsrc_turbodiff.c" ] || grep -q libturbodiff "$src/configure"; then
        log "$src already has turbodiff changes that this script did not record:" \
            "give a clean FFmpeg tree (for a tarball, remove $src to unpack it again)"
        exit 1
    fi
    applied_now=()
    for p in "$patchdir"/*.patch; do
        log "applying $(basename "$p")"
        # A dry run first: patch would leave a failing patch half applied.
        if ! out=$(patch -p1 -N --dry-run -d "$src" < "$p" 2>&1); then
            echo "$out" >&2
            log "$(basename "$p") does not apply to FFmpeg $version in $src; taking back the rest"
            for ((i = ${#applied_now[@]} - 1; i >= 0; i--)); do
                patch -p1 -R -s -d "$src" < "${applied_now[i]}"
            done
            exit 1
        fi
        patch -p1 -N -s -d "$src" < "$p"
        applied_now+=("$p")
    done
    cp -r "$patchdir" "$applied"
    for f in $(touched "$applied"/*.patch); do
        old=${before[$f]:-}
        [ -n "$old" ] && [ "${old% *}" = "$(sha1sum < "$src/$f")" ] && touch -d "@${old##* }" "$src/$f"
    done
fi

# 4. Configure (only when the flags changed) and build.
flags=(--enable-libturbodiff --disable-doc --disable-debug
       --extra-ldflags="-Wl,-rpath,$prefix/lib")
have() { pkg-config --exists "$1" 2>/dev/null; }
if [ "$config" = minimal ]; then
    filters=turbodiff,turbodiff_i2v,scale,format,null,overlay,concat,sendcmd,split,lutrgb
    filters+=,testsrc2,color,nullsrc,metadata,showinfo,setpts,trim,fps,select,hflip
    # drawtext needs libfreetype and, since FFmpeg 8, libharfbuzz.
    if have freetype2 && have harfbuzz; then
        flags+=(--enable-libfreetype --enable-libharfbuzz); filters+=,drawtext
    else
        log "libfreetype-dev or libharfbuzz-dev is not installed: building without drawtext"
    fi
    # libx264 for the README's and the filter docs' -c:v libx264 (make
    # demo's build; GPL, as Debian's own ffmpeg is).
    encoders=
    if have x264; then
        flags+=(--enable-gpl --enable-libx264)
        encoders=,libx264
    else
        log "libx264-dev is not installed: building without libx264"
    fi
    flags+=(--disable-everything --disable-autodetect --disable-asm --disable-network
            --enable-zlib --enable-filter=$filters --enable-indev=lavfi
            --enable-protocol=file,pipe
            --enable-muxer=rawvideo,framemd5,framecrc,null,image2,mov,mp4,yuv4mpegpipe
            --enable-demuxer=image2,mov,rawvideo,yuv4mpegpipe
            --enable-encoder=png,rawvideo,mpeg4,wrapped_avframe,pcm_s16le${encoders:-}
            --enable-decoder=png,rawvideo,mpeg4,wrapped_avframe
            --enable-parser=png,mpeg4video)
else
    flags+=(--enable-gpl)
    for lib in "libx264 x264" "libx265 x265" "libvpx vpx" "libsvtav1 SvtAv1Enc" \
               "libfreetype freetype2" "libharfbuzz harfbuzz"; do
        set -- $lib
        if have "$2"; then flags+=(--enable-$1); else log "$2 not found: building without $1"; fi
    done
fi
# Extra configure flags, e.g. FFMPEG_CONFIGURE_EXTRA=--toolchain=gcc-tsan
# for the ThreadSanitizer check of the filters' threading.
flags+=(${FFMPEG_CONFIGURE_EXTRA:-})
out=$builddir/$config-$version
mkdir -p "$out"
stamp=$(printf '%s\n' "${flags[@]}" "$src" "$(sha1sum < "$src/configure")" | sha1sum | cut -c1-16)
if [ "$(cat "$out/.configured" 2>/dev/null)" != "$stamp" ]; then
    log "configuring ($config) in $out"
    (cd "$out" && "$src/configure" "${flags[@]}" >configure.log 2>&1) ||
        { tail -n 20 "$out/config.log" >&2; log "configure failed, see $out/config.log"; exit 1; }
    echo "$stamp" > "$out/.configured"
fi
log "building with -j$jobs"
make -C "$out" -j"$jobs" ffmpeg ffprobe >"$out/make.log" 2>&1 ||
    { tail -n 30 "$out/make.log" >&2; log "build failed, see $out/make.log"; exit 1; }
echo "$out/ffmpeg"
