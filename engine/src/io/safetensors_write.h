/*
 * Writing safetensors files (the layout safetensors.c reads): 8-byte
 * little-endian header length, a JSON header padded with spaces to a
 * multiple of 8 bytes (as the Rust `safetensors` crate pads it), then every
 * tensor's bytes end to end in the order given.
 *
 * Tensors are produced one at a time by a callback, so a writer holds at
 * most one tensor in memory: converting a 14B checkpoint needs no more RAM
 * than its largest tensor.
 */
#ifndef TD_IO_SAFETENSORS_WRITE_H
#define TD_IO_SAFETENSORS_WRITE_H

#include "core/ctx.h"
#include "core/tensor.h"

typedef struct td_st_item {
    const char *name;
    td_dtype dtype;
    int ndim;
    int64_t shape[TD_MAX_DIMS];
} td_st_item;

/* Write item i's nbytes of data (row-major, contiguous) into dst; 0 or a
 * negative TD_E* recorded on the context. */
typedef int (*td_st_fill_fn)(void *opaque, int i, void *dst, size_t nbytes);

/*
 * Write n items to path. On any failure the partial file is removed and the
 * error names path (TD_EIO) or is what fill returned.
 */
int td_safetensors_write(td_ctx *ctx, const char *path, const td_st_item *items, int n,
                         td_st_fill_fn fill, void *opaque);

#endif
