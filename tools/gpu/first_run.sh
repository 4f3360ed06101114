#!/bin/bash
# First run of the CUDA backend on a lent GPU machine (one H100 or H200,
# nvcc 13, PyTorch, compute-sanitizer, no OpenBLAS, no internet), from
# binaries built elsewhere by tools/gpu/build_for_gpu.sh. Under 8 minutes:
# every step has its own time limit (they add up to 470 s), and a step that
# fails or times out is recorded and the next one still runs.
#
#   tools/gpu/first_run.sh OUTDIR [CARRYDIR]     (CARRYDIR: build-gpu/carry)
#
# Writes OUTDIR/summary.txt (one file: each step's status and the tables)
# and each step's full log beside it. Exit status: 0 when every step passed.
set -u
OUT=${1:?usage: first_run.sh OUTDIR [CARRYDIR]}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CARRY=${2:-$ROOT/build-gpu/carry}
BIN=$CARRY/bin
SUMMARY=$OUT/summary.txt
FAILED=0
mkdir -p "$OUT"
# The carried host libraries first; the CUDA runtime and cuBLAS come from the
# machine's CUDA 13 (the probe's ldd lines show any that are not found).
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
CUDA_HOME=$(cd "$(dirname "$NVCC")/.." 2>/dev/null && pwd || echo /usr/local/cuda)
export LD_LIBRARY_PATH="$CARRY/lib:$CUDA_HOME/lib64:$CUDA_HOME/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# cuDNN 9 (libcudnn.so.9, which the binaries link for conv3d): the machine may
# have it only inside PyTorch's pip wheels (site-packages/nvidia/cudnn/lib).
# That directory goes after CUDA's, so a toolkit copy wins where there is one.
# Found nowhere, the binaries do not start ("libcudnn.so.9 => not found" in
# the probe); TD_CUDNN=OFF tools/gpu/build_for_gpu.sh then builds them without.
CUDNN_DIR=$(python3 - 2>/dev/null <<'PY'
import glob, os, site
roots = []
try:
    import nvidia.cudnn
    roots += [os.path.join(p, "lib") for p in nvidia.cudnn.__path__]
except ImportError:
    pass
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    roots += [os.path.join(sp, "nvidia"), os.path.join(sp, "torch", "lib")]
for r in roots:
    hits = sorted(glob.glob(os.path.join(r, "**", "libcudnn.so.9"), recursive=True))
    if hits:
        print(os.path.dirname(hits[0]))
        break
PY
)
if [ -n "$CUDNN_DIR" ]; then
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$CUDNN_DIR"
fi
# The tests' fixtures: the carried copy, not the build machine's checkout
# compiled into them as TD_ROOT.
export TD_TEST_ROOT="$CARRY/root"
: > "$SUMMARY"

say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }

# step NAME LIMIT_S CMD...: run with a time limit, log to OUT/NAME.log,
# one status line in the summary (ok / FAILED rc / TIMEOUT).
step() {
    local name=$1 limit=$2 rc t0 t1
    shift 2
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    t1=$(date +%s)
    if [ $rc -eq 0 ]; then
        say "[$name] ok ($((t1 - t0)) s)"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        say "[$name] TIMEOUT after ${limit} s"
        FAILED=1
    else
        say "[$name] FAILED rc=$rc ($((t1 - t0)) s)"
        FAILED=1
    fi
    return $rc
}

say "# turbodiff first GPU run, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
say "cuDNN directory from PyTorch's wheels: ${CUDNN_DIR:-none found}"

# 1. probe: the GPU, its driver, what PyTorch sees; the binaries' libraries.
step probe 30 bash -c 'set -e; nvidia-smi; nvidia-smi -L; nvcc --version | tail -2;
    python3 -c "import torch; print(\"torch\", torch.__version__, \"devices\", torch.cuda.device_count(), torch.cuda.get_device_name())";
    for b in '"$BIN"'/*; do echo "== ldd $b"; ldd "$b"; done'
grep -E "^GPU |^torch |not found" "$OUT/probe.log" | tee -a "$SUMMARY"
grep -m1 "libcudnn.so.9 =>" "$OUT/probe.log" | sed 's/^[[:space:]]*/libcudnn resolved: /' | tee -a "$SUMMARY"

# 2. every CUDA op against the CPU backend.
step test_cuda_ops 60 "$BIN/test_cuda_ops"
# The cuDNN version loaded (cudnnGetVersion) and which conv3d frames it took.
grep -E "^conv3d: cuDNN|cuda backend:" "$OUT/test_cuda_ops.log" | head -3 | tee -a "$SUMMARY"
grep -E "FAIL|rel L2|exact|differ|ran|passed|failed|by cuDNN|by im2col" "$OUT/test_cuda_ops.log" | tail -100 >> "$SUMMARY"

# 3. compute-sanitizer on the same test: out-of-bounds and misaligned
# accesses, shared-memory races, reads of uninitialised device memory.
# The test runs every case at full size, so the slow tools may hit their
# limits; a TIMEOUT line says so rather than a pass.
step memcheck 45 compute-sanitizer --tool memcheck --error-exitcode 99 "$BIN/test_cuda_ops"
step racecheck 35 compute-sanitizer --tool racecheck --error-exitcode 99 "$BIN/test_cuda_ops"
step initcheck 35 compute-sanitizer --tool initcheck --error-exitcode 99 "$BIN/test_cuda_ops"
for t in memcheck racecheck initcheck; do
    grep -E "ERROR SUMMARY|Invalid|Race|Uninitialized" "$OUT/$t.log" | head -5 | sed "s/^/  $t: /" >> "$SUMMARY"
done

# 4. one full-size Wan 1.3B DiT block, per op: ours, then PyTorch bf16.
step bench_block 75 "$BIN/bench_cuda_block"
step torch_block 45 python3 "$ROOT/tools/gpu/torch_block.py"
say ""
say "# per-op ms: turbodiff cuda | torch bf16"
paste -d'|' <(grep -v '^#' "$OUT/bench_block.log") <(grep -v '^#' "$OUT/torch_block.log") >> "$SUMMARY"
grep '^#' "$OUT/bench_block.log" "$OUT/torch_block.log" >> "$SUMMARY"

# 5. the whole pipeline on the tiny model sets, CUDA against the CPU: t2v
# full/SLA/W8A8, i2v expert pair resident and low memory, cancel; each
# case's rel L2 of the decoded frames (bar 3e-2).
say ""
step test_cuda_pipeline 50 "$BIN/test_cuda_pipeline"
grep -E "FAIL|rel L2|passed|failed|skipped" "$OUT/test_cuda_pipeline.log" >> "$SUMMARY"

# compute-sanitizer on one tiny whole-pipeline run (t2v, full attention):
# text encoder, DiT, sampler and VAE kernels as the pipeline calls them.
step pipe_memcheck 40 compute-sanitizer --tool memcheck --error-exitcode 99 "$BIN/test_cuda_pipeline" --t2v
step pipe_racecheck 30 compute-sanitizer --tool racecheck --error-exitcode 99 "$BIN/test_cuda_pipeline" --t2v
step pipe_initcheck 25 compute-sanitizer --tool initcheck --error-exitcode 99 "$BIN/test_cuda_pipeline" --t2v
for t in pipe_memcheck pipe_racecheck pipe_initcheck; do
    grep -E "ERROR SUMMARY|Invalid|Race|Uninitialized" "$OUT/$t.log" | head -5 | sed "s/^/  $t: /" >> "$SUMMARY"
done

say ""
say "overall: $([ $FAILED -eq 0 ] && echo ok || echo FAILED)"
exit $FAILED
