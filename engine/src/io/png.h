/*
 * PNG in and out, for start images and frame sequences of the CLI: the
 * non-interlaced files any tool writes (grey, grey+alpha, RGB, RGBA at 8 or
 * 16 bits, palette at 1-8 bits), read strictly: every chunk's CRC checked,
 * sizes bounded, the image data inflated to exactly the size IHDR implies.
 * Decoding gives packed RGB24 as PIL's convert("RGB") does: alpha dropped,
 * 16-bit samples to their high byte, grey replicated, palettes expanded.
 */
#ifndef TD_IO_PNG_H
#define TD_IO_PNG_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

/* Largest side and pixel count accepted (a 16k square). */
#define TD_PNG_MAX_SIDE 16384
#define TD_PNG_MAX_PIXELS ((int64_t)1 << 28)

/* name is used in messages. *rgb (w * h * 3 bytes) is the caller's to free. */
int td_png_decode(td_ctx *ctx, const char *name, const uint8_t *data, size_t size,
                  uint8_t **rgb, int *w, int *h);
int td_png_read(td_ctx *ctx, const char *path, uint8_t **rgb, int *w, int *h);

/* Packed RGB24 rows (linesize bytes apart) to an 8-bit RGB PNG. */
int td_png_write(td_ctx *ctx, const char *path, const uint8_t *rgb, int w, int h,
                 ptrdiff_t linesize);

#endif
