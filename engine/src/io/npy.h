/*
 * NumPy .npy files (format 1.0-3.0, C order, little-endian), the exchange
 * format of the CLI (--latents, --noise-from, --context-from, --out).
 */
#ifndef TD_IO_NPY_H
#define TD_IO_NPY_H

#include "core/ctx.h"
#include "core/tensor.h"

/* Read into a new owned tensor, widened to f32 (from f32, f64, f16, bf16-as-
 * V2 is not supported; integer arrays are read as their own dtype). */
int td_npy_read(td_ctx *ctx, const char *path, td_tensor *out);
/* The same from bytes in memory (label names them in messages). */
int td_npy_read_bytes(td_ctx *ctx, const char *label, const void *data, size_t size,
                      td_tensor *out);
/* Write an f32 (or any dtype numpy knows) contiguous tensor. */
int td_npy_write(td_ctx *ctx, const char *path, const td_tensor *t);

#endif
