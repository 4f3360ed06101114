/*
 * Just enough of the zip format for torch.save archives: end of central
 * directory (zip64 too: torch writes it for files past 4 GB), the central
 * directory, local headers, entries stored or deflated.
 */
#ifndef TD_IO_ZIP_H
#define TD_IO_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

typedef struct td_zip_entry {
    const char *name;      /* into the central directory, not NUL-terminated */
    size_t name_len;
    uint64_t comp_size, size, local_off;
    uint32_t crc;
    uint16_t method;
} td_zip_entry;

typedef struct td_zip {
    const char *label;
    const uint8_t *data;
    size_t size;
    td_zip_entry *e;
    size_t n;
} td_zip;

int td_zip_open(td_ctx *ctx, const char *label, const uint8_t *data, size_t size, td_zip *z);
void td_zip_close(td_zip *z);

const td_zip_entry *td_zip_find(const td_zip *z, const char *name);
/* The entry's bytes: a pointer into the archive when stored, else inflated
 * into *owned (malloc'd, the caller frees it; NULL when stored). */
int td_zip_read(td_ctx *ctx, const td_zip *z, const td_zip_entry *e,
                const uint8_t **out, void **owned);

#endif
