#!/usr/bin/env bash
# make demo's main job: a prompt rendered by the turbodiff source filter in
# the FFmpeg we built, encoded to .mp4, then the same clip through the CLI.
# The model set is tests/data/pipeline: every stage of the engine runs
# (tokenizer, umT5, rCM over the Wan DiT, streaming Wan VAE), but its
# weights are RANDOM, so the picture is noise. A trained default model
# (issue 9) will replace it; real Wan / TurboDiffusion files work the same
# way with model=DIR.
set -euo pipefail
build=${1:?usage: demo.sh BUILD_DIR FFMPEG_DIR}
ffdir=${2:?usage: demo.sh BUILD_DIR FFMPEG_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
models="$root/tests/data/pipeline"
out="$build/demo"
prompt="a red circle moves right on a blue background"
mkdir -p "$out"

echo "== ffmpeg -f lavfi -i turbodiff=... -c:v mpeg4 $out/clip.mp4"
time "$ffdir/ffmpeg" -hide_banner -loglevel info -y -f lavfi \
    -i "turbodiff=model=$models:prompt=$prompt:size=128x64:frames=33:seed=42" \
    -c:v mpeg4 -q:v 3 "$out/clip.mp4"
"$ffdir/ffprobe" -v error -show_entries stream=codec_name,width,height,nb_frames,r_frame_rate \
    -of default=nw=1 "$out/clip.mp4"

echo "== turbodiff generate (the same engine through the CLI, with per-stage timings)"
"$build/tools/turbodiff" generate --model "$models" --prompt "$prompt" --size 128x64 \
    --frames 33 --seed 42 --out "$out/clip.y4m" --json 2>/dev/null

echo "== wrote $out/clip.mp4 and $out/clip.y4m (random weights: expect noise)"
