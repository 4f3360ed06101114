#!/usr/bin/env bash
# make demo's main job: a prompt rendered by the turbodiff source filter in
# the FFmpeg we built, with no model named, so the default model
# (models/toy: coloured shapes moving on plain backgrounds, 64x64, 17
# frames) draws it; scaled up with another filter in the same chain and
# encoded to .mp4. Then the same clip through the CLI, with per-stage
# timings. Real Wan / TurboDiffusion files work the same way with model=DIR.
set -euo pipefail
build=${1:?usage: demo.sh BUILD_DIR FFMPEG_DIR}
ffdir=${2:?usage: demo.sh BUILD_DIR FFMPEG_DIR}
out="$build/demo"
prompt="a red circle moves right on a blue background"
mkdir -p "$out"

echo "== ffmpeg -f lavfi -i turbodiff=prompt='$prompt' -vf scale=256:256 -c:v mpeg4 $out/clip.mp4"
time "$ffdir/ffmpeg" -hide_banner -loglevel info -y -f lavfi \
    -i "turbodiff=prompt=$prompt:seed=42" -vf scale=256:256:flags=neighbor \
    -c:v mpeg4 -q:v 3 "$out/clip.mp4"
"$ffdir/ffprobe" -v error -show_entries stream=codec_name,width,height,nb_frames,r_frame_rate \
    -of default=nw=1 "$out/clip.mp4"

echo "== turbodiff generate (the same engine through the CLI, with per-stage timings)"
"$build/tools/turbodiff" generate --prompt "$prompt" --seed 42 --out "$out/clip.y4m" --json 2>/dev/null

echo "== wrote $out/clip.mp4 (256x256, scaled up) and $out/clip.y4m (64x64)"
