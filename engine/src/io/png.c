#include "png.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "mmap_file.h"

static const uint8_t signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

typedef struct ihdr {
    int w, h, depth, color, channels;
    int64_t row_bytes;       /* packed samples of one row, without the filter byte */
} ihdr;

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static int parse_ihdr(td_ctx *ctx, const char *name, const uint8_t *d, uint32_t len, ihdr *hd)
{
    /* channels per colour type 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA */
    static const int channels[7] = { 1, 0, 3, 1, 2, 0, 4 };
    uint32_t w, h;

    if (len != 13)
        return td_fail(ctx, TD_EFORMAT, "%s: IHDR is %u bytes, not 13", name, len);
    w = be32(d), h = be32(d + 4);
    hd->depth = d[8], hd->color = d[9];
    if (w < 1 || h < 1 || w > TD_PNG_MAX_SIDE || h > TD_PNG_MAX_SIDE ||
        (int64_t)w * h > TD_PNG_MAX_PIXELS)
        return td_fail(ctx, TD_EUNSUPPORTED, "%s: image size %ux%u is out of range (1 to %d a "
                       "side, %lld pixels)", name, w, h, TD_PNG_MAX_SIDE, (long long)TD_PNG_MAX_PIXELS);
    if (hd->color > 6 || !channels[hd->color])
        return td_fail(ctx, TD_EFORMAT, "%s: colour type %d is not a PNG colour type", name, hd->color);
    if (!(hd->depth == 8 || (hd->depth == 16 && hd->color != 3) ||
          (hd->color == 3 && (hd->depth == 1 || hd->depth == 2 || hd->depth == 4)) ||
          (hd->color == 0 && (hd->depth == 1 || hd->depth == 2 || hd->depth == 4))))
        return td_fail(ctx, TD_EFORMAT, "%s: bit depth %d is invalid for colour type %d", name,
                       hd->depth, hd->color);
    if (d[10] != 0 || d[11] != 0)
        return td_fail(ctx, TD_EFORMAT, "%s: unknown compression (%d) or filter method (%d)",
                       name, d[10], d[11]);
    if (d[12] != 0)
        return td_fail(ctx, TD_EUNSUPPORTED, "%s: interlaced (Adam7) PNG is not supported; "
                       "re-save it without interlacing", name);
    hd->w = (int)w, hd->h = (int)h;
    hd->channels = channels[hd->color];
    hd->row_bytes = ((int64_t)w * hd->channels * hd->depth + 7) / 8;
    return 0;
}

static uint8_t paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return (uint8_t)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

/* Undo the per-row filters in place; raw holds h rows of 1 + row_bytes. */
static int unfilter(td_ctx *ctx, const char *name, const ihdr *hd, uint8_t *raw)
{
    int64_t n = hd->row_bytes, bpp = (hd->channels * hd->depth + 7) / 8;
    const uint8_t *prev = NULL;

    for (int y = 0; y < hd->h; y++) {
        uint8_t *row = raw + y * (n + 1), type = row[0], *cur = row + 1;
        if (type > 4)
            return td_fail(ctx, TD_EFORMAT, "%s: row %d has filter type %d (0-4 exist)", name, y, type);
        for (int64_t i = 0; i < n; i++) {
            int a = i >= bpp ? cur[i - bpp] : 0, b = prev ? prev[i] : 0;
            int c = prev && i >= bpp ? prev[i - bpp] : 0;
            switch (type) {
            case 1: cur[i] = (uint8_t)(cur[i] + a); break;
            case 2: cur[i] = (uint8_t)(cur[i] + b); break;
            case 3: cur[i] = (uint8_t)(cur[i] + (a + b) / 2); break;
            case 4: cur[i] = (uint8_t)(cur[i] + paeth(a, b, c)); break;
            default: break;
            }
        }
        prev = cur;
    }
    return 0;
}

/* Sample i of a row at the header's depth, as 8 bits (high byte of 16,
 * low depths scaled so the largest value is 255) or, for palettes, the index. */
static int sample(const ihdr *hd, const uint8_t *row, int64_t i)
{
    int d = hd->depth, v;
    if (d == 8)
        return row[i];
    if (d == 16)
        return row[2 * i];
    v = (row[i * d / 8] >> (8 - d - (int)(i * d % 8))) & ((1 << d) - 1);
    return hd->color == 3 ? v : v * 255 / ((1 << d) - 1);
}

static int to_rgb(td_ctx *ctx, const char *name, const ihdr *hd, const uint8_t *raw,
                  const uint8_t *plte, int plte_n, uint8_t *rgb)
{
    for (int y = 0; y < hd->h; y++) {
        const uint8_t *row = raw + y * (hd->row_bytes + 1) + 1;
        for (int x = 0; x < hd->w; x++) {
            uint8_t *o = rgb + ((int64_t)y * hd->w + x) * 3;
            int64_t s = (int64_t)x * hd->channels;
            if (hd->color == 3) {
                int k = sample(hd, row, x);
                if (k >= plte_n)
                    return td_fail(ctx, TD_EFORMAT, "%s: pixel (%d, %d) uses palette entry %d of "
                                   "%d", name, x, y, k, plte_n);
                memcpy(o, plte + 3 * k, 3);
            } else if (hd->channels >= 3) {
                for (int c = 0; c < 3; c++)
                    o[c] = (uint8_t)sample(hd, row, s + c);
            } else {
                o[0] = o[1] = o[2] = (uint8_t)sample(hd, row, s);
            }
        }
    }
    return 0;
}

/* Inflate the concatenated IDAT payloads into exactly `size` bytes. */
static int inflate_idat(td_ctx *ctx, const char *name, const uint8_t *data, size_t size,
                        uint8_t *raw, size_t raw_size)
{
    z_stream z;
    size_t pos = 8;
    int zr = Z_OK;

    memset(&z, 0, sizeof(z));
    if (inflateInit(&z) != Z_OK)
        return td_fail(ctx, TD_ENOMEM, "%s: cannot start zlib", name);
    z.next_out = raw;
    z.avail_out = (uInt)raw_size;
    while (pos + 12 <= size && zr == Z_OK) {
        uint32_t len = be32(data + pos);
        if (!memcmp(data + pos + 4, "IDAT", 4)) {
            z.next_in = (Bytef *)(uintptr_t)(data + pos + 8);
            z.avail_in = len;
            while (z.avail_in && zr == Z_OK)
                zr = inflate(&z, Z_NO_FLUSH);
        }
        pos += 12 + (size_t)len;    /* chunks were bounds-checked by the caller */
    }
    inflateEnd(&z);
    if (zr != Z_STREAM_END && zr != Z_OK)
        return td_fail(ctx, TD_EFORMAT, "%s: image data does not inflate (%s)", name,
                       zr == Z_BUF_ERROR ? "more data than the image size" : "corrupt zlib stream");
    if (z.avail_out)
        return td_fail(ctx, TD_EFORMAT, "%s: image data is truncated (%zu of %zu bytes)", name,
                       raw_size - z.avail_out, raw_size);
    return 0;
}

int td_png_decode(td_ctx *ctx, const char *name, const uint8_t *data, size_t size,
                  uint8_t **rgb, int *w, int *h)
{
    ihdr hd = { 0 };
    const uint8_t *plte = NULL;
    int plte_n = 0, have_ihdr = 0, have_idat = 0, have_iend = 0;
    uint8_t *raw = NULL;
    size_t raw_size;
    int rc;

    *rgb = NULL;
    if (size < 8 || memcmp(data, signature, 8))
        return td_fail(ctx, TD_EFORMAT, "%s: not a PNG file (bad signature)", name);
    /* Walk the chunks once: bounds, CRCs, order and the chunks we need. */
    for (size_t pos = 8; !have_iend;) {
        uint32_t len;
        const uint8_t *type;
        if (size - pos < 12)
            return td_fail(ctx, TD_EFORMAT, "%s: truncated at byte %zu (no IEND chunk)", name, pos);
        len = be32(data + pos);
        type = data + pos + 4;
        if (len > 0x7fffffffu || len > size - pos - 12)
            return td_fail(ctx, TD_EFORMAT, "%s: chunk '%.4s' at byte %zu claims %u bytes, past "
                           "the end of the file", name, (const char *)type, pos, len);
        if ((uint32_t)crc32(crc32(0, NULL, 0), type, len + 4) != be32(data + pos + 8 + len))
            return td_fail(ctx, TD_EFORMAT, "%s: chunk '%.4s' at byte %zu has a bad CRC", name,
                           (const char *)type, pos);
        if (!have_ihdr && memcmp(type, "IHDR", 4))
            return td_fail(ctx, TD_EFORMAT, "%s: first chunk is '%.4s', not IHDR", name,
                           (const char *)type);
        if (!memcmp(type, "IHDR", 4)) {
            if (have_ihdr)
                return td_fail(ctx, TD_EFORMAT, "%s: two IHDR chunks", name);
            TD_TRY(parse_ihdr(ctx, name, data + pos + 8, len, &hd));
            have_ihdr = 1;
        } else if (!memcmp(type, "PLTE", 4)) {
            if (len % 3 || len == 0 || len > 768)
                return td_fail(ctx, TD_EFORMAT, "%s: PLTE of %u bytes is not 1-256 RGB entries",
                               name, len);
            plte = data + pos + 8, plte_n = (int)(len / 3);
        } else if (!memcmp(type, "IDAT", 4)) {
            have_idat = 1;
        } else if (!memcmp(type, "IEND", 4)) {
            have_iend = 1;
        } else if (!(type[0] & 0x20)) {
            return td_fail(ctx, TD_EUNSUPPORTED, "%s: unknown critical chunk '%.4s'", name,
                           (const char *)type);
        }
        pos += 12 + (size_t)len;
    }
    if (!have_idat)
        return td_fail(ctx, TD_EFORMAT, "%s: no image data (IDAT)", name);
    if (hd.color == 3 && !plte)
        return td_fail(ctx, TD_EFORMAT, "%s: palette image without a PLTE chunk", name);

    raw_size = (size_t)hd.h * (size_t)(hd.row_bytes + 1);
    raw = malloc(raw_size);
    *rgb = malloc((size_t)hd.w * hd.h * 3);
    if (!raw || !*rgb)
        rc = td_fail(ctx, TD_ENOMEM, "%s: out of memory for a %dx%d image", name, hd.w, hd.h);
    else
        rc = inflate_idat(ctx, name, data, size, raw, raw_size);
    if (rc == 0)
        rc = unfilter(ctx, name, &hd, raw);
    if (rc == 0)
        rc = to_rgb(ctx, name, &hd, raw, plte, plte_n, *rgb);
    free(raw);
    if (rc < 0) {
        free(*rgb);
        *rgb = NULL;
        return rc;
    }
    *w = hd.w, *h = hd.h;
    return 0;
}

int td_png_read(td_ctx *ctx, const char *path, uint8_t **rgb, int *w, int *h)
{
    td_bytes b;
    int rc;

    TD_TRY(td_bytes_map(ctx, path, &b));
    rc = td_png_decode(ctx, path, b.data, b.size, rgb, w, h);
    td_bytes_release(&b);
    return rc;
}

static int put_chunk(FILE *f, const char *type, const uint8_t *d, uint32_t len)
{
    uint8_t hdr[8], crc[4];
    uLong c = crc32(crc32(0, NULL, 0), (const Bytef *)type, 4);
    if (len)                 /* crc32() of a NULL buffer restarts at 0 */
        c = crc32(c, d, len);
    put_be32(hdr, len);
    memcpy(hdr + 4, type, 4);
    put_be32(crc, (uint32_t)c);
    return fwrite(hdr, 1, 8, f) == 8 && (!len || fwrite(d, 1, len, f) == len) &&
           fwrite(crc, 1, 4, f) == 4;
}

int td_png_write(td_ctx *ctx, const char *path, const uint8_t *rgb, int w, int h,
                 ptrdiff_t linesize)
{
    size_t row = (size_t)w * 3, raw_size = (size_t)h * (row + 1);
    uLongf z_size = compressBound((uLong)raw_size);
    uint8_t *raw = malloc(raw_size), *z = malloc(z_size), ihdr_d[13] = { 0 };
    FILE *f = NULL;
    int ok;

    if (!raw || !z) {
        free(raw);
        free(z);
        return td_fail(ctx, TD_ENOMEM, "%s: out of memory for a %dx%d PNG", path, w, h);
    }
    for (int y = 0; y < h; y++) {
        raw[y * (row + 1)] = 0;     /* filter none: these files are for viewing */
        memcpy(raw + y * (row + 1) + 1, rgb + y * linesize, row);
    }
    put_be32(ihdr_d, (uint32_t)w);
    put_be32(ihdr_d + 4, (uint32_t)h);
    ihdr_d[8] = 8, ihdr_d[9] = 2;
    ok = compress2(z, &z_size, raw, (uLong)raw_size, 6) == Z_OK && (f = fopen(path, "wb")) &&
         fwrite(signature, 1, 8, f) == 8 && put_chunk(f, "IHDR", ihdr_d, 13) &&
         put_chunk(f, "IDAT", z, (uint32_t)z_size) && put_chunk(f, "IEND", NULL, 0);
    if (f && fclose(f) != 0)
        ok = 0;
    free(raw);
    free(z);
    return ok ? 0 : td_fail(ctx, TD_EIO, "cannot write %s", path);
}
