/*
 * Test-only "fenced" backend: the CPU kernels, run on memory that host code
 * cannot touch outside an op. Every activation, tensor_new tensor and
 * uploaded weight lives in one mmap'd reservation kept PROT_NONE except for
 * the allocations an op's arguments lie in, and only while that op runs;
 * every tensor argument must lie inside a live allocation (else TD_EINVAL
 * naming the op and the argument); fresh memory is filled with NaN. A host
 * access kills the process with exit status 3 and a message on stderr
 * naming the allocation and the last op. The whole pipeline on it equals
 * the CPU backend bit for bit: the proof, without a GPU, that the models
 * touch backend memory only through ops.
 *
 * Not part of the library: tests link it (tests/CMakeLists.txt).
 */
#ifndef TD_TEST_FENCED_BACKEND_H
#define TD_TEST_FENCED_BACKEND_H

#include "backend/backend.h"

/* Fenced backend over the CPU kernels: act TD_F32 (bit-identical to the CPU
 * backend) or TD_BF16 (activations stored bf16, widened to f32 around each
 * CPU kernel, and float weights narrowed to bf16 at upload, like CUDA's
 * dtypes). arena_bytes of activation arena (0: 256 MiB); tensor_new and
 * upload memory come from a separate, larger reservation. */
int td_backend_fenced_f32_create(td_ctx *ctx, size_t arena_bytes, td_backend **out);
int td_backend_fenced_bf16_create(td_ctx *ctx, size_t arena_bytes, td_backend **out);

/* The most bytes the backend held at once (activations, tensor_new and
 * uploads, exact tensor sizes without page rounding) since it was made or
 * since the last reset, which starts over from what it holds now: what
 * tests hold the job estimate (turbodiff.h, td_job_estimate) against. */
size_t td_backend_fenced_peak(td_backend *be);
void td_backend_fenced_peak_reset(td_backend *be);

#endif
