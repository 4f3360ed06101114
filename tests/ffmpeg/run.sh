#!/bin/bash
# The FFmpeg tier: the built ffmpeg runs the turbodiff filters.
#
#   tests/ffmpeg/run.sh FFMPEG_BUILD_DIR      (holds ffmpeg and ffprobe)
#
# Option and error tests need no model. Generation tests need a model set
# (TURBODIFF_MODEL=dir; make check uses tests/data/pipeline, random weights)
# and, for image to video, TURBODIFF_I2V_MODEL; without one they print a SKIP
# line saying which is missing. Every ffmpeg run is under a timeout: a hang is a failure.
set -uo pipefail

bin=${1:?usage: run.sh FFMPEG_BUILD_DIR}
ffmpeg=$bin/ffmpeg
ffprobe=$bin/ffprobe
tmp=$(mktemp -d /tmp/td-ffmpeg-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0 skip=0
T=${TD_FFMPEG_TIMEOUT:-60}
here=$(cd "$(dirname "$0")" && pwd)

ok()   { pass=$((pass + 1)); echo "ok   $1"; }
bad()  { fail=$((fail + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && sed 's/^/     | /' <<<"$2" | tail -n 8; }
skipped() { skip=$((skip + 1)); echo "SKIP $1: $2"; }

# ffmpeg exits with its AVERROR code masked to 8 bits (EINVAL: 234), so only
# timeout's 124/137 and the crash signals' 128+N mean a hang or a crash.
hung_or_crashed() {
    case $1 in 124|137|132|134|135|136|139) return 0 ;; *) return 1 ;; esac
}

# ffmpeg must fail with a message containing $2, exit non-zero, not hang or crash.
expect_error() {
    local name=$1 want=$2; shift 2
    local out rc
    out=$(timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin -v error "$@" 2>&1); rc=$?
    if [ $rc -eq 0 ]; then bad "$name: exited 0" "$out"
    elif hung_or_crashed $rc; then bad "$name: timeout or crash (rc $rc)" "$out"
    elif ! grep -qF -- "$want" <<<"$out"; then bad "$name: message lacks '$want'" "$out"
    else ok "$name ($(grep -F -- "$want" <<<"$out" | head -n 1 | sed 's/^\[[^]]*\] //'))"
    fi
}

# --- help lists every option ------------------------------------------------
common="prompt prompts model dit dit_low vae t5 tokenizer size resolution aspect frames
        duration rate steps sigma_max sampler flow_steps shift guidance guidance_low negative_prompt timesteps
        boundary seed attention topk device low_memory max_memory lora lora_scale queue"
for f in "turbodiff:$common clips loop" "turbodiff_i2v:$common mode adaptive"; do
    name=${f%%:*}
    help=$(timeout "$T" "$ffmpeg" -hide_banner -h filter="$name" 2>&1)
    missing=
    for o in ${f#*:}; do grep -qE "^ +$o +\[?<" <<<"$help" || missing+=" $o"; done
    if [ -z "$missing" ]; then ok "-h filter=$name lists every option"
    else bad "-h filter=$name misses:$missing" "$help"; fi
done
help=$("$ffmpeg" -hide_banner -h filter=turbodiff 2>&1)
# each option shows its real range; threads is the generic filter option
grep -qE "^ +steps .*\(from 1 to 4\)" <<<"$help" && grep -qE "^ +topk .*\(from 0 to 1\)" <<<"$help" &&
    ! grep -qE "^ +threads " <<<"$help" && ok "help shows the real ranges, no private threads" ||
    bad "help shows the real ranges, no private threads" "$help"
grep -q "full" <<<"$help" && grep -q "sagesla" <<<"$help" && ok "help names the attention modes" ||
    bad "help names the attention modes" "$help"
# the samplers, and the model families the model option takes
grep -qE "^ +auto +0 " <<<"$help" && grep -qE "^ +rcm +1 " <<<"$help" && grep -qE "^ +flow +2 " <<<"$help" &&
    grep -qE "^ +model .*TI2V-5B" <<<"$help" && ok "help names the samplers and the models" ||
    bad "help names the samplers and the models" "$help"

# --- bad options: clear message, non-zero exit --------------------------------
# A model directory under the upstream file names, linked to the tiny random
# fixtures (the engine loads and checks every file when a filter opens it),
# so that option errors are reached with and without a model.
data=$(cd "$here/../data" && pwd)
model=$tmp/model
mkdir -p "$model/google/umt5-xxl"
ln -s "$data/pipeline/dit.safetensors" "$model/TurboWan2.1-T2V-1.3B-480P-quant.pth"
ln -s "$data/vae/vae_wan.pth" "$model/Wan2.1_VAE.pth"
ln -s "$data/pipeline/umt5.safetensors" "$model/models_t5_umt5-xxl-enc-bf16.pth"
ln -s "$data/text/spiece.model" "$model/google/umt5-xxl/spiece.model"
src() { echo "-f lavfi -i turbodiff=prompt=red_circle:$1"; }
null="-f null -"

TURBODIFF_MODEL_DIR=/nonexistent \
expect_error "no model"           "no model"                 $(src "frames=5") $null
expect_error "missing model dir"  "model directory '/nonexistent-td'" $(src "model=/nonexistent-td") $null
expect_error "missing dit file"   "dit file '/nonexistent-td/dit.pth'" $(src "model=$model:dit=/nonexistent-td/dit.pth") $null
expect_error "dir without vae"    "no vae file"              $(src "dit=$model/Wan2.1_VAE.pth") $null
expect_error "size 850x480"       "nearest valid sizes are 848x480 and 864x480" $(src "model=$model:size=850x480") $null
expect_error "size 8x480"         "width 8 is out of range"  $(src "model=$model:size=8x480") $null
expect_error "steps 0"            "'steps' out of range [1 - 4]"  $(src "model=$model:steps=0") $null
expect_error "steps 5"            "'steps' out of range [1 - 4]"  $(src "model=$model:steps=5") $null
expect_error "unknown attention"  "attention"                $(src "model=$model:attention=dense") $null
expect_error "topk 0"             "topk 0 is out of range"   $(src "model=$model:topk=0") $null
expect_error "topk 1.5"           "'topk' out of range [0 - 1]" $(src "model=$model:topk=1.5") $null
expect_error "frames 0"           "frames 0 is out of range" $(src "model=$model:frames=0") $null
expect_error "no prompt"          "no prompt"                -f lavfi -i "turbodiff=model=$model" $null
expect_error "missing prompts"    "prompts file '/nonexistent-td/p.txt'" -f lavfi -i "turbodiff=model=$model:prompts=/nonexistent-td/p.txt" $null
: > "$tmp/empty.txt"
expect_error "empty prompts file" "prompts file '$tmp/empty.txt' is empty" -f lavfi -i "turbodiff=model=$model:prompts=$tmp/empty.txt" $null
expect_error "prompts file is a directory" "prompts file '$tmp' is a directory" -f lavfi -i "turbodiff=model=$model:prompts=$tmp" $null
printf '  \n# a comment\n\t\n' > "$tmp/blank.txt"
expect_error "prompts file of blanks and comments" "holds no prompt" -f lavfi -i "turbodiff=model=$model:prompts=$tmp/blank.txt" $null
expect_error "bad device"         "device 'gpu'"             $(src "model=$model:device=gpu") $null
expect_error "bad resolution"     "resolution '1080p'"       $(src "model=$model:resolution=1080p") $null
expect_error "i2v steps 5"        "'steps' out of range [1 - 4]"  -f lavfi -i testsrc2=d=1 -vf "turbodiff_i2v=prompt=x:model=$model:steps=5" $null
expect_error "i2v extend 100x100" "must be a multiple of 16" -f lavfi -i testsrc2=s=100x100:d=1 -vf "turbodiff_i2v=prompt=x:model=$data/pipeline/i2v:mode=extend" $null
# sampler options: ranges, and options the sampler would not read (with
# sampler=auto, once the model says which sampler it takes)
ti2v=$data/pipeline/ti2v
expect_error "sampler bogus"      '"sampler" option value "bogus"' $(src "model=$model:sampler=bogus") $null
expect_error "timesteps 5000"     "timesteps '5000': expected DiT timesteps from 1 to 1000" $(src "model=$model:sampler=dmd:timesteps=5000") $null
expect_error "timesteps with sampler=rcm" "timesteps is a DMD option, but sampler=rcm" $(src "model=$model:sampler=rcm:timesteps=900") $null
expect_error "timesteps, rCM model" "timesteps is a DMD option, but this model samples with rCM" $(src "model=$model:timesteps=900") $null
expect_error "flow_steps with sampler=dmd" "flow_steps is a flow matching option, but sampler=dmd" $(src "model=$model:sampler=dmd:flow_steps=8") $null
expect_error "flow_steps 1001"    "'flow_steps' out of range [0 - 1000]" $(src "model=$model:flow_steps=1001") $null
expect_error "guidance -1"        "'guidance' out of range [0 - 100]" $(src "model=$model:guidance=-1") $null
expect_error "boundary 1"         "boundary 1 is out of range" $(src "model=$model:boundary=1") $null
expect_error "flow_steps with sampler=rcm" "flow_steps is a flow matching option, but sampler=rcm" $(src "model=$model:sampler=rcm:flow_steps=8") $null
expect_error "sigma_max with sampler=flow" "sigma_max is an rCM option, but sampler=flow" $(src "model=$model:sampler=flow:sigma_max=40") $null
expect_error "guidance, rCM model" "guidance is a flow matching option, but this model samples with rCM" $(src "model=$model:guidance=3") $null
expect_error "steps, TI2V-5B"     "steps is an rCM option, but this model samples with flow matching: drop steps" $(src "model=$ti2v:steps=2") $null
# what the model set asks of the job, refused at init with the fix
expect_error "TI2V-5B 48x32" "size 48x32: the VAE" $(src "model=$ti2v:size=48x32") $null
expect_error "TI2V-5B 48x32 names the sizes" "must be a multiple of 32 and the height of 32: the nearest valid sizes are 32x32 and 64x32" $(src "model=$ti2v:size=48x32") $null
expect_error "i2v pair in the source filter" "this model is image-to-video (the DiT" $(src "model=$data/pipeline/i2v") $null
expect_error "i2v pair in the source filter names the fix" "give it an image (turbodiff_i2v, or --image)" $(src "model=$data/pipeline/i2v") $null
expect_error "t2v model in turbodiff_i2v" "this model is text-to-video" -f lavfi -i testsrc2=s=64x32:d=1 -vf "turbodiff_i2v=prompt=x:model=$model:size=64x32" $null
expect_error "i2v negative_prompt with sampler=rcm" "negative_prompt is a flow matching option, but sampler=rcm" -f lavfi -i testsrc2=d=1 -vf "turbodiff_i2v=prompt=x:model=$model:sampler=rcm:negative_prompt=blur" $null

# A libturbodiff whose interface differs from the one FFmpeg was built with.
if cc -shared -fPIC -O2 -I"$here/../../engine/include" "$here/other_abi.c" -o "$tmp/other_abi.so"; then
    LD_PRELOAD="$tmp/other_abi.so" \
    expect_error "other library ABI"     "rebuild FFmpeg against the installed libturbodiff" $(src "model=$model") $null
    LD_PRELOAD="$tmp/other_abi.so" \
    expect_error "other library ABI, i2v" "rebuild FFmpeg" -f lavfi -i testsrc2=d=1 -vf "turbodiff_i2v=prompt=x:model=$model" $null
else
    bad "building tests/ffmpeg/other_abi.c"
fi

# --- generation ----------------------------------------------------------------
# Models load when the filter initialises: a broken file fails there, with
# the file named and a non-zero exit (no -xerror needed), not in the worker
# after an empty output was written.
broken=$tmp/broken
mkdir -p "$broken"
cp -rs "$model/." "$broken/"
rm "$broken/TurboWan2.1-T2V-1.3B-480P-quant.pth"
head -c 100 "$data/pipeline/dit.safetensors" > "$broken/TurboWan2.1-T2V-1.3B-480P-quant.pth"
expect_error "truncated DiT fails at init" "TurboWan2.1-T2V-1.3B-480P-quant.pth" \
    -f lavfi -i "turbodiff=model=$broken:prompt=probe:frames=1:size=32x32" $null
expect_error "truncated DiT fails at init, i2v" "TurboWan2.1-T2V-1.3B-480P-quant.pth" \
    -f lavfi -i testsrc2=s=32x32:d=1 -vf "turbodiff_i2v=model=$broken:prompt=probe" $null
expect_error "device=cuda without a CUDA device" "CUDA" $(src "model=$model:device=cuda") $null

# The generation tests, run against a model directory M with extra env.
gen_suite() {
    local label=$1 M=$2 I2V=$3; shift 3
    local envs=("$@") got want n a b c rc pid
    probe() { env "${envs[@]}" timeout "$T" "$ffprobe" -v error -f lavfi "$@"; }
    run()   { env "${envs[@]}" timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin -v error "$@"; }

    # frame count, size, pix_fmt, time base, continuous pts across 2 clips
    got=$(probe -i "turbodiff=$M:prompt=a:seed=1:frames=5:clips=2" -show_entries \
          stream=width,height,pix_fmt,time_base:frame=pts -of csv=p=0 | tr '\n' ' ')
    # yuv420p is what a consumer taking any format gets (rgb24 on request)
    want="0 1 2 3 4 5 6 7 8 9 64,32,yuv420p,1/16 "  # ffprobe prints frames first
    [ "$got" = "$want" ] && ok "$label frames-size-pts" || bad "$label frames-size-pts: got '$got' want '$want'"

    # framemd5: same seed identical, other seed different
    for s in 1 1 2; do run -f lavfi -i "turbodiff=$M:prompt=a:seed=$s:frames=3" -f framemd5 - | grep -v '^#' | tr '\n' ' '; echo; done > "$tmp/md5"
    a=$(sed -n 1p "$tmp/md5"); b=$(sed -n 2p "$tmp/md5"); c=$(sed -n 3p "$tmp/md5")
    [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" != "$c" ] && ok "$label framemd5-determinism" ||
        bad "$label framemd5-determinism" "$(cat "$tmp/md5")"

    # chains: scale, drawtext showing the prompt from metadata, overlay, concat
    # (two turbodiff instances naming the same model share one engine)
    local dt=
    if [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] &&
       "$ffmpeg" -hide_banner -filters 2>/dev/null | grep -q ' drawtext '; then
        dt=",drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:text='%{metadata\:lavfi.turbodiff.prompt}'"
    fi
    n=$(run -filter_complex "turbodiff=$M:prompt=a:seed=1:frames=3,scale=128:64$dt[a];color=red:s=128x64:r=16:d=1[b];[b][a]overlay=shortest=1[c];turbodiff=$M:prompt=b:seed=2:frames=2,scale=128:64[d];[c][d]concat=n=2" \
          -f framemd5 - | grep -cv '^#')
    [ "$n" = 5 ] && ok "$label chains-scale${dt:+-drawtext}-overlay-concat" || bad "$label chains: $n frames, want 5"
    [ -n "$dt" ] || skipped "$label drawtext" "this ffmpeg has no drawtext (libfreetype-dev missing at build)"

    # mp4 encode and read back
    n=
    run -f lavfi -i "turbodiff=$M:prompt=a:seed=1:frames=5" -c:v mpeg4 -y "$tmp/o.mp4" &&
        n=$(timeout "$T" "$ffprobe" -v error -count_frames -show_entries stream=nb_read_frames -of csv=p=0 "$tmp/o.mp4")
    [ "$n" = 5 ] && ok "$label mp4-roundtrip" || bad "$label mp4-roundtrip: '${n}' frames, want 5"

    # prompts file: one clip per non-empty line, in order
    printf 'first\n\nsecond\nthird\n' > "$tmp/prompts.txt"
    got=$(probe -i "turbodiff=$M:prompts=$tmp/prompts.txt:seed=1:frames=1" -show_entries \
          frame_tags=lavfi.turbodiff.prompt,lavfi.turbodiff.clip -of csv=p=0 | tr '\n' ' ')
    [ "$got" = "first,0 second,1 third,2 " ] || [ "$got" = "0,first 1,second 2,third " ] &&
        ok "$label prompts-file-order" || bad "$label prompts-file-order: '$got'"

    # blank lines, white space and # comments are not prompts; a prompt's
    # own surrounding white space is cut
    printf '# shot list\n  \n\t\n  first  \n' > "$tmp/prompts2.txt"
    got=$(probe -i "turbodiff=$M:prompts=$tmp/prompts2.txt:seed=1:frames=1" -show_entries \
          frame_tags=lavfi.turbodiff.prompt -of csv=p=0 | tr '\n' ' ')
    [ "$got" = "first " ] && ok "$label prompts-file-comments" || bad "$label prompts-file-comments: '$got'"

    # at info: what will be made before the first step, the hint for longer
    # video, one summary line per clip and no per-step progress; a rate other
    # than the model's 16 fps warns
    got=$(env "${envs[@]}" timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin -v info \
          -f lavfi -i "turbodiff=$M:prompt=a:seed=1:frames=3:rate=30" -f null - 2>&1)
    grep -q "1 clip(s) of 3 frames 64x32 at 30/1 fps.*each clip needs about [0-9.]* MiB on .* and [a-z ]*[0-9.]* s.*for longer video set loop=1" <<<"$got" &&
        [ "$(grep -c "clip 0: 3 frames, seed 1, generated in" <<<"$got")" = 1 ] &&
        ! grep -q "denoise 1/1" <<<"$got" && grep -q "plays 1.88x as fast" <<<"$got" &&
        ok "$label plan, a summary per clip and rate warning at info" ||
        bad "$label plan/summary/rate at info" "$got"
    # at verbose: per-step progress with an ETA
    got=$(env "${envs[@]}" timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin -v verbose \
          -f lavfi -i "turbodiff=$M:prompt=a:seed=1:frames=3" -f null - 2>&1)
    grep -q "clip 0: denoise 1/1, .*eta" <<<"$got" && ok "$label per-step progress at verbose" ||
        bad "$label per-step progress at verbose" "$got"
    # the estimate at verbose: tokens (3 frames of 64x32: 2 latent frames of 2 x 4) and the peak
    grep -q "estimate: 16 DiT tokens x 1 forward(s), 512 text tokens; peak [0-9]* bytes in the .* stage" <<<"$got" &&
        grep -q "clip 0: 64x32, 16 DiT tokens, peak about" <<<"$got" &&
        ok "$label estimate at verbose" || bad "$label estimate at verbose" "$got"

    # a clip that cannot fit is refused at init, before any step, with the
    # numbers, and nothing is written; one that fits runs under the same limit
    rm -f "$tmp/big.mp4"
    expect_error "$label max_memory refuses at init" "1024x1024 x 81 frames needs about" \
        -f lavfi -i "turbodiff=$M:prompt=a:size=1024x1024:frames=81:max_memory=64M" -c:v mpeg4 "$tmp/big.mp4"
    [ ! -e "$tmp/big.mp4" ] && ok "$label nothing written when refused" || bad "$label refused job wrote $tmp/big.mp4"
    got=$(run -f lavfi -i "turbodiff=$M:prompt=a:size=1024x1024:frames=81:max_memory=64M" -f null - 2>&1)
    grep -q "max_memory is 61.0 MiB" <<<"$got" && ! grep -q "denoise" <<<"$got" &&
        ok "$label refusal names the limit" || bad "$label refusal names the limit" "$got"
    run -f lavfi -i "turbodiff=$M:prompt=a:frames=3:max_memory=64Mi" -f null - &&
        ok "$label a clip that fits runs under max_memory" || bad "$label a clip that fits under max_memory"
    # by default the limit is what the device has: an absurd clip is refused anywhere
    expect_error "$label absurd clip refused by default" "is available" \
        -f lavfi -i "turbodiff=$M:prompt=a:size=4096x4096:frames=4093" $null
    if [ -n "$I2V" ]; then
        expect_error "$label i2v max_memory refuses at init" "needs about" \
            -f lavfi -i testsrc2=s=64x32:d=1 -vf "turbodiff_i2v=$I2V:prompt=a:size=1024x1024:frames=81:max_memory=64M" $null
    fi

    # frames are tagged as what they are (limited-range BT.709 yuv420p with
    # left-sited chroma by default, full-range RGB when rgb24 is asked for;
    # BT.709 primaries, sRGB transfer) and are all key frames
    for f in "yuv420p 1,tv,bt709,bt709,iec61966-2-1,left" "rgb24 1,pc,gbr,bt709,iec61966-2-1,unspecified"; do
        set -- $f
        got=$(probe -i "turbodiff=$M:prompt=a:seed=1:frames=2,format=$1" -show_entries \
              frame=key_frame,color_range,color_space,color_primaries,color_transfer,chroma_location \
              -of csv=p=0 | sort -u | tr '\n' ' ')
        [ "$got" = "$2 " ] && ok "$label $1 frame colour tags and key frames" ||
            bad "$label $1 frame colour tags and key frames: '$got' want '$2'"
    done

    # common pipelines without -pix_fmt: a yuv4mpeg pipe, and an mp4 that
    # reads back the range and colours of its frames
    run -f lavfi -i "turbodiff=$M:prompt=a:seed=1:frames=3" -f yuv4mpegpipe - > "$tmp/o.y4m" 2> "$tmp/y4m.err"
    # the header line, then "FRAME\n" and 64x32 4:2:0 (3072 bytes) per frame
    got="$(head -n 1 "$tmp/o.y4m" | cut -d' ' -f1-7), $((($(wc -c < "$tmp/o.y4m") - $(head -n 1 "$tmp/o.y4m" | wc -c)) / 3078)) frames"
    [ "$got" = "YUV4MPEG2 W64 H32 F16:1 Ip A1:1 C420mpeg2, 3 frames" ] && ok "$label yuv4mpegpipe without -pix_fmt" ||
        bad "$label yuv4mpegpipe without -pix_fmt: '$got'" "$(cat "$tmp/y4m.err")"
    got=
    run -f lavfi -i "turbodiff=$M:prompt=a:seed=1:frames=3" -c:v mpeg4 -y "$tmp/tags.mp4" &&
        got=$(timeout "$T" "$ffprobe" -v error -show_entries \
              stream=pix_fmt,color_range,color_space,color_primaries,color_transfer -of csv=p=0 "$tmp/tags.mp4")
    [ "$got" = "yuv420p,tv,bt709,iec61966-2-1,bt709" ] && ok "$label mp4 reads back its colour tags ($got)" ||
        bad "$label mp4 colour tags: '$got'"

    # the yuv420p frames are the rgb24 ones in BT.709 limited range: luma
    # within 2 levels of swscale's conversion of the rgb24 frames, each
    # chroma plane's mean within 2 (chroma siting may differ per pixel)
    run -f lavfi -i "turbodiff=$M:prompt=a:seed=3:frames=2" -f rawvideo - > "$tmp/yuv" &&
    run -f lavfi -i "turbodiff=$M:prompt=a:seed=3:frames=2,format=rgb24,scale=out_color_matrix=bt709:out_range=tv,format=yuv420p" \
        -f rawvideo - > "$tmp/yuv.ref"
    got=$(paste <(od -An -v -tu1 -w1 "$tmp/yuv") <(od -An -v -tu1 -w1 "$tmp/yuv.ref") | awk '
        { i = (NR - 1) % 3072; p = i < 2048 ? 0 : i < 2560 ? 1 : 2; d = $1 - $2
          if (p == 0 && (d > 2 || d < -2)) bad++; sum[p] += d; n[p]++ }
        END { printf "%d %d %.2f %.2f", NR, bad, sum[1] / n[1], sum[2] / n[2] }')
    set -- $got
    [ "${1:-0}" = 6144 ] && [ "$2" = 0 ] && awk -v u="$3" -v v="$4" 'BEGIN { exit !(u < 2 && u > -2 && v < 2 && v > -2) }' &&
        ok "$label yuv420p matches the rgb24 frames (chroma mean offsets $3 $4)" ||
        bad "$label yuv420p vs rgb24: bytes, luma pixels off by more than 2, chroma mean offsets: '$got'"

    # the output closes after 3 frames of a long clip: the job is cancelled
    # and ffmpeg ends long before the clip would (60 frames x 100 ms)
    local t0=$SECONDS
    TD_FAKE_FRAME_MS=100 run -f lavfi -i "turbodiff=$M:prompt=a:seed=1:frames=60" -frames:v 3 -c:v mpeg4 -y "$tmp/f3.mp4" 2>/dev/null
    n=$(timeout "$T" "$ffprobe" -v error -count_frames -show_entries stream=nb_read_frames -of csv=p=0 "$tmp/f3.mp4")
    [ "$n" = 3 ] && [ $((SECONDS - t0)) -lt 5 ] && ok "$label -frames:v 3 stops the job ($((SECONDS - t0))s)" ||
        bad "$label -frames:v 3: $n frames in $((SECONDS - t0))s"

    # sendcmd at clip 0's first frame: clip 0 keeps its prompt, clip 2 has the
    # new one (clip 1 may already be under way: "from the next clip" means the
    # next one started after the command; queue=1 bounds how far ahead).
    got=$(probe -i "turbodiff=$M:prompt=before:seed=1:frames=2:clips=3:queue=1,sendcmd=c='0.0 turbodiff prompt after'" \
          -show_entries frame_tags=lavfi.turbodiff.prompt -of csv=p=0 | tr '\n' ' ')
    [[ $got == "before before "* && $got == *" after after " ]] && ok "$label sendcmd-next-clip" ||
        bad "$label sendcmd-next-clip: '$got'"

    # image to video: first, each, extend; pts strictly increasing
    if [ -z "$I2V" ]; then
        skipped "$label i2v (first, each, extend)" "needs an image-to-video model set (TURBODIFF_I2V_MODEL=dir)"
    else for m in "first 3" "each 6" "extend 5"; do
        set -- $m
        got=$(run -f lavfi -i testsrc2=s=64x32:r=2:d=1 -vf "format=rgb24,turbodiff_i2v=$I2V:prompt=a:seed=1:frames=3:mode=$1" \
              -fps_mode passthrough -f framecrc - | grep -v '^#' | awk -F, '{print $2}' | tr -d ' ' | tr '\n' ' ')
        n=$(wc -w <<<"$got")
        if [ "$n" = "$2" ] && [ "$(tr ' ' '\n' <<<"$got" | sed '/^$/d' | sort -n | uniq | tr '\n' ' ')" = "$got" ]; then
            ok "$label i2v-$1 ($n frames, pts $got)"
        else bad "$label i2v-$1: $n frames, want $2; pts $got"; fi
    done
    # the clip follows its image and seed; adaptive keeps a portrait input
    # portrait at the area of size (64x32 -> 32x64 for a 1:2 input)
    for s in "1 a" "1 a" "2 a" "1 b"; do
        set -- $s
        local flip=; [ "$2" = b ] && flip=,hflip
        run -f lavfi -i "testsrc2=s=64x32:r=2:d=0.5,format=rgb24$flip" \
            -vf "turbodiff_i2v=$I2V:prompt=a:seed=$1:frames=2" -f framemd5 - | grep -v '^#' | tr '\n' ' '; echo
    done > "$tmp/i2v.md5"
    a=$(sed -n 1p "$tmp/i2v.md5"); b=$(sed -n 2p "$tmp/i2v.md5"); c=$(sed -n 3p "$tmp/i2v.md5"); d=$(sed -n 4p "$tmp/i2v.md5")
    [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" != "$c" ] && [ "$a" != "$d" ] && ok "$label i2v-determinism (seed and image matter)" ||
        bad "$label i2v-determinism" "$(cat "$tmp/i2v.md5")"
    got=$(probe -i "testsrc2=s=48x96:r=2:d=0.5,format=rgb24,turbodiff_i2v=$I2V:prompt=a:frames=1:adaptive=1" \
          -show_entries stream=width,height -of csv=p=0)
    [ "$got" = "32,64" ] && ok "$label i2v-adaptive (48x96 input -> $got)" || bad "$label i2v-adaptive: got '$got' want 32,64"
    # extend continues a 25 fps input at 25 fps: constant frame rate, no
    # frame dropped (13 input + 2 generated frames, pts 0..14 in 1/25)
    got=$(probe -i "testsrc2=s=64x32:r=25:d=0.48,format=rgb24,turbodiff_i2v=$I2V:prompt=a:seed=1:frames=3:mode=extend" \
          -show_entries frame=pts_time -of csv=p=0 | awk '{printf "%d ", $1 * 25 + 0.5}')
    [ "$got" = "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 " ] && ok "$label i2v-extend follows a 25 fps input" ||
        bad "$label i2v-extend at 25 fps: pts '$got'"

    # a still image (RGB) into common pipelines without -pix_fmt: a yuv4mpeg
    # pipe (first: the clip; extend: the image, then 2 generated frames) and
    # an mp4 with the default encoder, 4:2:0 and tagged
    run -f lavfi -i testsrc2=s=64x32:r=1:d=1 -frames:v 1 -y "$tmp/still.png"
    for m in first extend; do
        run -i "$tmp/still.png" -vf "turbodiff_i2v=$I2V:prompt=a:seed=1:frames=3:mode=$m" \
            -f yuv4mpegpipe - > "$tmp/i2v.y4m" 2> "$tmp/i2v-y4m.err"
        # (first: 3 frames; extend: the still, then 3 new frames; the header
        # line, then "FRAME\n" and 3072 bytes of 4:2:0 per frame)
        got="$(head -n 1 "$tmp/i2v.y4m" | cut -d' ' -f1-3,7 | cut -c1-22), $((($(wc -c < "$tmp/i2v.y4m") - $(head -n 1 "$tmp/i2v.y4m" | wc -c)) / 3078)) frames"
        want="YUV4MPEG2 W64 H32 C420, $([ $m = first ] && echo 3 || echo 4) frames"
        [ "$got" = "$want" ] && ok "$label i2v-$m png to yuv4mpegpipe without -pix_fmt" ||
            bad "$label i2v-$m png to yuv4mpegpipe: '$got'" "$(cat "$tmp/i2v-y4m.err")"
    done
    # (the encoder's format as ffmpeg reports it: this build may not decode
    # its default mp4 encoder's output; libx264 would take an RGB stream as
    # yuv444p, which few players play)
    got=$(env "${envs[@]}" timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin -v info -i "$tmp/still.png" \
          -vf "turbodiff_i2v=$I2V:prompt=a:seed=1:frames=3" -y "$tmp/i2v.mp4" 2>&1 | grep -A3 '^Output #0' | grep 'Video:')
    [[ $got == *"yuv420p(tv, bt709"* ]] && ok "$label i2v png to mp4 without -pix_fmt (${got#*Video: })" ||
        bad "$label i2v png to mp4: '$got'"
    # clip frames are tagged as the source's: yuv420p by default, rgb24 for RGB consumers
    for f in "yuv420p 1,tv,bt709,bt709,iec61966-2-1,left" "rgb24 1,pc,gbr,bt709,iec61966-2-1,unspecified"; do
        set -- $f
        got=$(probe -i "testsrc2=s=64x32:r=1:d=1,format=rgb24,turbodiff_i2v=$I2V:prompt=a:seed=1:frames=2,format=$1" \
              -show_entries frame=key_frame,color_range,color_space,color_primaries,color_transfer,chroma_location \
              -of csv=p=0 | sort -u | tr '\n' ' ')
        [ "$got" = "$2 " ] && ok "$label i2v $1 frame colour tags" || bad "$label i2v $1 frame colour tags: '$got' want '$2'"
    done

    # mode=each cannot know its input's length: a warning at the second frame
    # (once), and the count of clips when the input ends
    got=$(env "${envs[@]}" timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin -v info -f lavfi -i testsrc2=s=64x32:r=3:d=1 \
          -vf "turbodiff_i2v=$I2V:prompt=a:seed=1:frames=2:mode=each" -f null - 2>&1)
    [ "$(grep -c "mode=each: every input frame becomes a clip of 2 frames (.*set mode=first" <<<"$got")" = 1 ] &&
        grep -q "mode=each: the input ended after 3 frame(s): 3 clip(s), 6 frames in all" <<<"$got" &&
        ok "$label i2v-each warns once and counts the clips" || bad "$label i2v-each warning and count" "$got"
    got=$(env "${envs[@]}" timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin -v info -i "$tmp/still.png" \
          -vf "turbodiff_i2v=$I2V:prompt=a:seed=1:frames=2:mode=each" -f null - 2>&1)
    ! grep -q "every input frame becomes" <<<"$got" && grep -q "after 1 frame(s): 1 clip(s)" <<<"$got" &&
        ok "$label i2v-each on one image: no warning" || bad "$label i2v-each on one image" "$got"
    fi

    # SIGINT mid-clip: clean exit; under valgrind no leak, no error
    local vg=
    command -v valgrind >/dev/null && vg="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
    env "${envs[@]}" TD_FAKE_FRAME_MS=50 $vg "$ffmpeg" -hide_banner -nostdin -v error \
        -f lavfi -i "turbodiff=$M:prompt=a:loop=1:frames=9" -f null - >"$tmp/vg" 2>&1 &
    pid=$!
    sleep "${TD_CANCEL_AFTER:-8}"; kill -INT $pid; wait $pid; rc=$?
    if [ $rc -ne 99 ] && ! hung_or_crashed $rc && ! grep -q "==[0-9]*==" "$tmp/vg"; then
        ok "$label cancel-sigint${vg:+ under valgrind} (rc $rc)"
    else bad "$label cancel-sigint (rc $rc)" "$(cat "$tmp/vg")"; fi
}

# The filters' frame path with a stand-in generator (see fake_pipeline.c):
# everything but the pixels is the real thing.
if cc -shared -fPIC -O2 -I"$here/../../engine/include" "$here/fake_pipeline.c" -o "$tmp/fake.so" -ldl; then
    # (image to video on the tiny i2v pair: a text-to-video model is refused at init)
    gen_suite "fake-pipeline:" "model=$model:size=64x32:steps=1:device=cpu" \
        "model=$data/pipeline/i2v:size=64x32:steps=1:device=cpu" LD_PRELOAD="$tmp/fake.so"

    # A clip estimated over 10 minutes is warned about at init, in minutes
    # (TD_FAKE_SECONDS stands in for a slow device); a quicker one is not.
    fm="model=$model:size=64x32:steps=1:device=cpu"
    fmi="model=$data/pipeline/i2v:size=64x32:steps=1:device=cpu"   # image to video needs an i2v model
    got=$(LD_PRELOAD="$tmp/fake.so" TD_FAKE_SECONDS=3000 timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin \
          -v warning -f lavfi -i "turbodiff=$fm:prompt=a:frames=3" -f null - 2>&1)
    grep -q "each clip will take about 50 min on cpu" <<<"$got" && ok "time budget warning at init" ||
        bad "time budget warning at init" "$got"
    got=$(LD_PRELOAD="$tmp/fake.so" TD_FAKE_SECONDS=590 timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin \
          -v warning -f lavfi -i "turbodiff=$fm:prompt=a:frames=3" -f null - 2>&1)
    ! grep -q "will take" <<<"$got" && ok "no time warning within the budget" ||
        bad "no time warning within the budget" "$got"

    # A job failing mid-clip (out of memory, device error) fails ffmpeg: the
    # filter returns the error, not EOF. The lavfi input device is read by
    # ffmpeg's demuxer, which ends an input on a read error unless -xerror.
    LD_PRELOAD="$tmp/fake.so" TD_FAKE_FAIL_AT=4 \
    expect_error "worker failure, -filter_complex" "out of memory" -filter_complex "turbodiff=$fm:prompt=a:frames=9" $null
    LD_PRELOAD="$tmp/fake.so" TD_FAKE_FAIL_AT=4 \
    expect_error "worker failure, -f lavfi -xerror" "out of memory" -xerror -f lavfi -i "turbodiff=$fm:prompt=a:frames=9" $null
    LD_PRELOAD="$tmp/fake.so" TD_FAKE_FAIL_AT=1 \
    expect_error "worker failure, i2v" "out of memory" -f lavfi -i testsrc2=s=64x32:r=2:d=1 -vf "format=rgb24,turbodiff_i2v=$fmi:prompt=a:frames=3:mode=each" $null

    # What turbodiff_i2v hands the library is the input image in RGB
    # (TD_FAKE_ECHO_IMAGE makes the clip that image, read here as rgb24):
    # an RGB still through the graph's conversion to the filter's yuv420p
    # and back within 2 levels on flat colours (BT.709, limited range), and
    # a yuv420p frame of sharp edges as swscale's accurate bilinear
    # conversion has it (chroma siting and interpolation).
    yuv="scale=out_color_matrix=bt709:out_range=tv,format=yuv420p"
    sws="scale=in_color_matrix=bt709:in_range=tv:flags=bilinear+full_chroma_int+accurate_rnd,format=rgb24"
    for img in "color=c=0xE08020:s=64x32:r=1:d=1,format=rgb24|format=rgb24|2|1" \
               "color=c=0x2050C0:s=64x32:r=1:d=1,format=rgb24|format=rgb24|2|1" \
               "testsrc2=s=64x32:r=1:d=1,format=rgb24,$yuv|$sws|1|0.1"; do
        IFS='|' read -r src ref max_ok mean_ok <<<"$img"
        timeout "$T" "$ffmpeg" -hide_banner -nostdin -v error -f lavfi -i "$src,$ref" -frames:v 1 \
            -f rawvideo - > "$tmp/echo.ref"
        LD_PRELOAD="$tmp/fake.so" TD_FAKE_ECHO_IMAGE=1 timeout "$T" "$ffmpeg" -hide_banner -nostdin -v error \
            -f lavfi -i "$src" -vf "turbodiff_i2v=$fmi:prompt=a:frames=1,format=rgb24" -f rawvideo - > "$tmp/echo.out"
        got=$(paste <(od -An -v -tu1 -w1 "$tmp/echo.out") <(od -An -v -tu1 -w1 "$tmp/echo.ref") | awk '
            { d = $1 - $2; if (d < 0) d = -d; if (d > max) max = d; sum += d }
            END { printf "%d %d %.2f", NR, max, sum / NR }')
        read -r n max mean <<<"$got"
        [ "$n" = 6144 ] && [ "$max" -le "$max_ok" ] && awk -v m="$mean" -v b="$mean_ok" 'BEGIN { exit !(m <= b) }' &&
            ok "i2v image to RGB, ${src%%=*} (max $max, mean $mean levels off)" ||
            bad "i2v image to RGB, ${src%%=*}: bytes, max and mean difference '$got', want max <= $max_ok, mean <= $mean_ok"
    done

    # the default model says once, at info, what it is and what it can draw
    # (two instances share its engine)
    got=$(env -u TURBODIFF_MODEL_DIR LD_PRELOAD="$tmp/fake.so" timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin \
          -v info -f lavfi -i "turbodiff=prompt=a:frames=1:steps=1[a];turbodiff=prompt=b:frames=1:steps=1[b];[a][b]concat[out0]" \
          -f null - 2>&1)
    [ "$(grep -c 'model "turbodiff toy: .*": draws one shape (circle, square or triangle)' <<<"$got")" = 1 ] &&
        ok "the default model says once what it draws" || bad "the default model's description, want once" "$got"

    # the model loads once with -vf and -filter_complex too, although ffmpeg
    # initialises their filters twice (once in a graph it only inspects)
    for args in "-vf turbodiff_i2v=model=$data/pipeline/i2v:size=64x32:prompt=a:frames=1:steps=1:device=cpu" \
                "-filter_complex turbodiff_i2v=model=$data/pipeline/i2v:size=64x32:prompt=a:frames=1:steps=1:device=cpu"; do
        got=$(LD_PRELOAD="$tmp/fake.so" timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin -v info \
              -f lavfi -i testsrc2=s=64x32:d=0.1 $args -f null - 2>&1)
        [ "$(grep -c 'residency on cpu' <<<"$got")" = 1 ] && ok "the model loads once with ${args%% *}" ||
            bad "${args%% *}: the model loaded $(grep -c 'residency on cpu' <<<"$got") times, want once" "$got"
    done

    # SIGTERM mid-clip: ffmpeg exits within a bound with a readable file
    # holding the frames already made
    LD_PRELOAD="$tmp/fake.so" TD_FAKE_FRAME_MS=200 "$ffmpeg" -hide_banner -nostdin -v error \
        -f lavfi -i "turbodiff=$fm:prompt=a:frames=200" -c:v mpeg4 -y "$tmp/term.mp4" >/dev/null 2>&1 &
    pid=$!; sleep 3; t0=$SECONDS; kill -TERM $pid
    for i in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
    kill -0 $pid 2>/dev/null && kill -KILL $pid; wait $pid; rc=$?
    n=$(timeout "$T" "$ffprobe" -v error -count_frames -show_entries stream=nb_read_frames -of csv=p=0 "$tmp/term.mp4")
    [ "${n:-0}" -gt 0 ] 2>/dev/null && [ $((SECONDS - t0)) -le 3 ] && ! hung_or_crashed $rc &&
        ok "SIGTERM mid-clip: exit in $((SECONDS - t0))s, $n frames readable" ||
        bad "SIGTERM mid-clip: rc $rc, '$n' frames, $((SECONDS - t0))s"
else
    bad "building tests/ffmpeg/fake_pipeline.c"
fi

# The same with real generation on a model set (make check passes the
# committed tiny random one); image to video needs an i2v model set.
if [ -z "${TURBODIFF_MODEL:-}" ]; then
    skipped "real generation (frames, framemd5, chains, mp4, prompts, sendcmd, i2v, cancel)" \
        "needs a model set: TURBODIFF_MODEL=dir"
else
    gen_suite "model:" "model=$TURBODIFF_MODEL:size=64x32:steps=1:device=cpu" \
        "${TURBODIFF_I2V_MODEL:+model=$TURBODIFF_I2V_MODEL:size=64x32:steps=1:device=cpu}" TD_UNUSED=1

    # at verbose, each clip's measured peak after its summary (the fake
    # pipeline measures nothing, so this needs the real one)
    got=$(timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin -v verbose -f lavfi \
          -i "turbodiff=model=$TURBODIFF_MODEL:size=64x32:steps=1:device=cpu:prompt=a:frames=3:clips=2" -f null - 2>&1)
    grep -q "clip 0: peak [0-9.]* MiB on the device, measured" <<<"$got" &&
        grep -q "clip 1: peak [0-9.]* MiB on the device, measured" <<<"$got" &&
        ok "model: measured peak per clip at verbose" || bad "model: measured peak per clip at verbose" "$got"

    # a model warning that every clip would repeat (the fixture's DiT has no
    # SLA projections) is said once per filter instance
    n=$(timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin -v warning -f lavfi \
        -i "turbodiff=model=$TURBODIFF_MODEL:size=64x32:steps=1:frames=1:clips=3:device=cpu:prompt=a" \
        -f null - 2>&1 | grep -c "no SLA projections")
    [ "$n" = 1 ] && ok "model warning once for 3 clips" || bad "model warning: said $n times for 3 clips, want 1"

    # no model option: the default model (here TURBODIFF_MODEL_DIR), at the
    # size and length its manifest declares when the user sets neither
    if grep -q '"size"' "$TURBODIFF_MODEL/turbodiff.json" 2>/dev/null; then
        want=$(sed -n 's/.*"size": "\([0-9]*\)x\([0-9]*\)".*/\1,\2/p' "$TURBODIFF_MODEL/turbodiff.json")
        want="$want $(sed -n 's/.*"frames": \([0-9]*\).*/\1/p' "$TURBODIFF_MODEL/turbodiff.json")"
        got=$(TURBODIFF_MODEL_DIR=$TURBODIFF_MODEL timeout "$T" "$ffprobe" -v error -f lavfi \
              -i "turbodiff=prompt=a:steps=1:seed=1" -count_frames \
              -show_entries stream=width,height,nb_read_frames -of csv=p=0 | awk -F, '{print $1","$2" "$3}')
        [ "$got" = "$want" ] && ok "default model at its own size ($got)" || bad "default model: got '$got' want '$want'"
    fi

    # LoRAs (tests/data/lora, made for the tiny DiTs' width 128): a LoRA
    # changes the clip, at scale 0 it does not; both filters; list errors.
    L=$here/../data/lora
    lora_md5() {
        timeout "$T" "$ffmpeg" -hide_banner -nostdin -v error "$@" -f framemd5 - | grep -v '^#' | md5sum
    }
    t2v="turbodiff=model=$TURBODIFF_MODEL:size=64x32:steps=1:device=cpu:prompt=a:seed=1:frames=3"
    a=$(lora_md5 -f lavfi -i "$t2v"); b=$(lora_md5 -f lavfi -i "$t2v:lora=$L/tiny_kohya.safetensors")
    c=$(lora_md5 -f lavfi -i "$t2v:lora=$L/tiny_kohya.safetensors|$L/tiny_kohya.safetensors:lora_scale=0|0")
    [ "$a" != "$b" ] && [ "$a" = "$c" ] && ok "lora changes the clip, lora_scale=0|0 does not" ||
        bad "lora: plain $a, lora $b, scale 0 $c"
    if [ -n "${TURBODIFF_I2V_MODEL:-}" ]; then
        i2v="turbodiff_i2v=model=$TURBODIFF_I2V_MODEL:size=64x32:steps=1:device=cpu:prompt=a:seed=1:frames=2"
        img="testsrc2=s=64x32:r=2:d=0.5,format=rgb24"
        a=$(lora_md5 -f lavfi -i "$img" -vf "$i2v"); b=$(lora_md5 -f lavfi -i "$img" -vf "$i2v:lora=$L/tiny_kohya.safetensors")
        [ "$a" != "$b" ] && ok "turbodiff_i2v lora changes the clip" || bad "turbodiff_i2v lora: $a vs $b"
    fi
    expect_error "lora for another width" "[4,192]" -f lavfi -i "$t2v:lora=$L/wide.safetensors" $null
    expect_error "lora_scale longer than lora" "lora_scale has 2 values for 1 lora files" \
        -f lavfi -i "$t2v:lora=$L/tiny_kohya.safetensors:lora_scale=1|2" $null
    expect_error "missing lora file" "lora file '/nonexistent-td/l.safetensors'" \
        -f lavfi -i "$t2v:lora=/nonexistent-td/l.safetensors" $null

    # Wan2.2 TI2V-5B (the tiny TI2V set: a 48-channel DiT with the Wan2.2
    # VAE) through both filters, as a user leaves it: its manifest's clip at
    # the model's 24 fps, flow matching at its own settings
    want="64,32,24/1,5"
    got=$(timeout "$T" "$ffprobe" -v error -f lavfi -i "turbodiff=model=$ti2v:prompt=a:seed=1:device=cpu" \
          -count_frames -show_entries stream=width,height,r_frame_rate,nb_read_frames -of csv=p=0)
    [ "$got" = "$want" ] && ok "TI2V-5B text to video: $got" || bad "TI2V-5B text to video: got '$got' want '$want'"
    img="testsrc2=s=64x32:r=2:d=0.5,format=rgb24"
    got=$(timeout "$T" "$ffprobe" -v error -f lavfi -i "$img,turbodiff_i2v=model=$ti2v:prompt=a:seed=1:device=cpu" \
          -count_frames -show_entries stream=width,height,r_frame_rate,nb_read_frames -of csv=p=0)
    [ "$got" = "$want" ] && ok "TI2V-5B image to video: $got" || bad "TI2V-5B image to video: got '$got' want '$want'"
    # the image is the clip's first frame (as the VAE renders it): the same
    # for every seed, where the rest of the clip and a text-to-video clip's
    # first frame follow the seed; another image makes another first frame
    rgb() { timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin -v error "$@" -f rawvideo -pix_fmt rgb24 -; }
    for s in 1 2; do
        rgb -f lavfi -i "$img" -vf "turbodiff_i2v=model=$ti2v:prompt=a:seed=$s:device=cpu" > "$tmp/ti2v_i$s"
        rgb -f lavfi -i "turbodiff=model=$ti2v:prompt=a:seed=$s:device=cpu" > "$tmp/ti2v_t$s"
    done
    rgb -f lavfi -i "$img,hflip" -vf "turbodiff_i2v=model=$ti2v:prompt=a:seed=1:device=cpu" > "$tmp/ti2v_flip"
    first() { head -c 6144 "$1"; }
    rest() { tail -c +6145 "$1"; }
    [ "$(wc -c < "$tmp/ti2v_i1")" = 30720 ] && cmp -s <(first "$tmp/ti2v_i1") <(first "$tmp/ti2v_i2") &&
        ! cmp -s <(rest "$tmp/ti2v_i1") <(rest "$tmp/ti2v_i2") && ! cmp -s <(first "$tmp/ti2v_t1") <(first "$tmp/ti2v_t2") &&
        ! cmp -s <(first "$tmp/ti2v_i1") <(first "$tmp/ti2v_flip") &&
        ok "TI2V-5B image to video starts from the image (first frame seed-independent, image-dependent)" ||
        bad "TI2V-5B image to video: first frame not the image's" "$(ls -l "$tmp"/ti2v_*)"

    # the flow sampler on the text-to-video set: deterministic by seed, not
    # the rCM clip; the plan line names the sampler the options resolve to
    for v in flow:flow_steps=2:seed=1 flow:flow_steps=2:seed=1 flow:flow_steps=2:seed=2 rcm:steps=1:seed=1; do
        lora_md5 -f lavfi -i "turbodiff=model=$TURBODIFF_MODEL:size=64x32:device=cpu:prompt=a:frames=3:sampler=$v"
    done > "$tmp/flow.md5"
    a=$(sed -n 1p "$tmp/flow.md5"); b=$(sed -n 2p "$tmp/flow.md5"); c=$(sed -n 3p "$tmp/flow.md5"); d=$(sed -n 4p "$tmp/flow.md5")
    [ "$a" = "$b" ] && [ "$a" != "$c" ] && [ "$a" != "$d" ] && ok "sampler=flow:flow_steps=2 deterministic by seed, unlike rcm" ||
        bad "sampler=flow: seed 1 $a, again $b, seed 2 $c, rcm $d"
    # DMD (FastWan's sampler) on any DiT: the timesteps given, its own clip
    e=$(lora_md5 -f lavfi -i "turbodiff=model=$TURBODIFF_MODEL:size=64x32:device=cpu:prompt=a:frames=3:sampler=dmd:timesteps=1000|500:seed=1")
    f=$(lora_md5 -f lavfi -i "turbodiff=model=$TURBODIFF_MODEL:size=64x32:device=cpu:prompt=a:frames=3:sampler=dmd:timesteps=1000|400:seed=1")
    [ "$e" != "$(md5sum </dev/null)" ] && [ "$e" != "$f" ] && [ "$e" != "$a" ] && [ "$e" != "$d" ] && ok "sampler=dmd follows its timesteps, unlike flow and rcm" ||
        bad "sampler=dmd: 1000|500 $e, 1000|400 $f, flow $a, rcm $d"
    got=$(timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin -v info -f lavfi \
          -i "turbodiff=model=$TURBODIFF_MODEL:prompt=a:seed=1:frames=1:device=cpu:sampler=dmd:timesteps=900" -f null - 2>&1)
    grep -qF "DMD timesteps 900, model " <<<"$got" && ok "plan line: DMD timesteps 900" || bad "plan line lacks 'DMD timesteps 900'" "$got"
    for v in "$TURBODIFF_MODEL:sampler=flow:flow_steps=2|flow matching 2 steps, shift 5, guidance 5," \
             "$TURBODIFF_MODEL:steps=2|rCM 2 step(s)," \
             "$ti2v|flow matching 50 steps, shift 5, guidance 5," \
             "$data/pipeline/t2v_a14b:flow_steps=3|flow matching 3 steps, shift 12, guidance 4 (low-noise expert 3),"; do
        got=$(timeout -k 5 "$T" "$ffmpeg" -hide_banner -nostdin -v info -f lavfi \
              -i "turbodiff=model=${v%%|*}:prompt=a:seed=1:frames=1:device=cpu" -f null - 2>&1)
        grep -qF "${v#*|} model " <<<"$got" && ok "plan line: ${v#*|}" || bad "plan line lacks '${v#*|}'" "$got"
    done
fi

echo "ffmpeg tier: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
