#!/usr/bin/env bash
# make demo's main job, as far as the engine goes today: text embedding ->
# rCM sampling over a Wan DiT -> streaming Wan VAE decode -> a .y4m clip,
# on the tiny random models committed as test fixtures. Random weights make
# structured noise, not a picture: this shows the data flow and its speed,
# not quality. Prompts need the tokenizer and the trained default model
# (issues 3 and 9); the FFmpeg filters need those too.
set -euo pipefail
build=${1:?usage: demo.sh BUILD_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
td="$build/tools/turbodiff"
out="$build/demo"
mkdir -p "$out"

echo "== the DiT checkpoint (TurboDiffusion .pth layout, read without running its pickle)"
"$td" inspect "$root/tests/data/dit/tiny.pth" > "$out/tensors.txt"
head -n 5 "$out/tensors.txt"

echo "== 17 frames at 64x64, 4 rCM steps, seed 42"
time "$td" t2v --dit "$root/tests/data/dit/tiny.pth" --heads 2 \
    --context-from "$root/tests/data/dit/context.npy" \
    --frames 17 --size 64x64 --steps 4 --seed 42 \
    --vae "$root/tests/data/vae/vae_wan.pth" --out "$out/clip.y4m"

frames=$(grep -c FRAME "$out/clip.y4m" || true)
echo "== wrote $out/clip.y4m: $(head -c 40 "$out/clip.y4m" | head -n 1), $frames frames"
echo "   play it with: ffplay $out/clip.y4m   (random weights: expect noise)"
