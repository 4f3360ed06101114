/*
 * A read-only byte range that a weight store owns: either a memory map of a
 * whole file or a heap buffer handed over by the caller (the fuzzers and
 * tests open weights from memory through the same parsers).
 */
#ifndef TD_IO_MMAP_FILE_H
#define TD_IO_MMAP_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

typedef enum td_bytes_kind {
    TD_BYTES_NONE = 0,   /* empty, or borrowed memory that is not ours to free */
    TD_BYTES_MMAP,
    TD_BYTES_HEAP,       /* malloc'd, freed with free() */
} td_bytes_kind;

typedef struct td_bytes {
    const uint8_t *data;
    size_t size;
    td_bytes_kind kind;
} td_bytes;

/* Map a whole file read-only. An empty file gives size 0 and no mapping. */
int td_bytes_map(td_ctx *ctx, const char *path, td_bytes *out);
void td_bytes_release(td_bytes *b);

#endif
