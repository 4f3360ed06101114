#!/bin/sh
# Build here what tools/gpu/first_run.sh runs on a lent GPU machine (one
# H100/H200, nvcc 13 and PyTorch there, no OpenBLAS, no internet), into
# OUTDIR (default build-gpu/carry, inside the ignored build-gpu/):
#   bin/   test_cuda_ops, test_cuda_pipeline and bench_cuda_block,
#          kernels for sm_90 only (Release, so the per-step sync of Debug
#          builds stays off);
#   root/  the tiny model fixtures test_cuda_pipeline runs, at their
#          paths in the source tree (the manifests name their files
#          relative to themselves): first_run.sh points TD_TEST_ROOT at it,
#          since the compiled-in TD_ROOT is this machine's checkout;
#   lib/   the host libraries the GPU machine lacks, found by ldd:
#          OpenBLAS (the CPU reference in the tests) and what it pulls
#          in (gfortran, quadmath). The CUDA runtime and cuBLAS are NOT
#          carried (cuBLASLt alone is ~500 MB; the carry limit is 64 MiB):
#          the GPU machine's CUDA 13 provides them. first_run.sh puts lib/
#          on LD_LIBRARY_PATH. Nor is cuDNN (hundreds of MB), which the
#          binaries link for conv3d where this machine's CUDA toolkit has
#          it (TD_CUDNN=OFF tools/gpu/build_for_gpu.sh builds without):
#          first_run.sh finds libcudnn.so.9 on the GPU machine, in
#          PyTorch's wheels if nowhere else, and prints the version loaded.
# Then run on the GPU machine, from the repository root:
#   tools/gpu/first_run.sh OUT build-gpu/carry
# (with the device tool: carry ["build-gpu/carry"], command
#  "tools/gpu/first_run.sh $OUT build-gpu/carry").
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUTDIR=${1:-$ROOT/build-gpu/carry}
BUILD=$ROOT/build-gpu/cmake
JOBS=${JOBS:-2}
TD_CUDNN=${TD_CUDNN:-ON}

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTD_CUDA=ON -DTD_CUDA_ARCHS=90-real -DTD_CUDNN="$TD_CUDNN"
cmake --build "$BUILD" -j"$JOBS" --target test_cuda_ops test_cuda_pipeline bench_cuda_block
rm -rf "$OUTDIR"
mkdir -p "$OUTDIR/bin" "$OUTDIR/lib"
for b in tests/test_cuda_ops tests/test_cuda_pipeline bench/bench_cuda_block; do
    cp "$BUILD/$b" "$OUTDIR/bin/"
    strip "$OUTDIR/bin/$(basename "$b")"
done
# The fixtures of the tiny pipeline (a few MB).
for f in tests/data/pipeline tests/data/vae/vae_wan.pth tests/data/text/spiece.model; do
    mkdir -p "$OUTDIR/root/$(dirname "$f")"
    cp -R "$ROOT/$f" "$OUTDIR/root/$f"
done
# Every non-system, non-CUDA library the binaries load.
for b in "$OUTDIR"/bin/*; do
    ldd "$b" | awk '/=> \// { print $3 }'
done | sort -u | while read -r lib; do
    case "$(basename "$lib")" in
    libopenblas*|libgfortran*|libquadmath*|libjansson*) cp -L "$lib" "$OUTDIR/lib/" ;;
    esac
done
du -sh "$OUTDIR"
ls -l "$OUTDIR/bin" "$OUTDIR/lib"
