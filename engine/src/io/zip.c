#include "zip.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define SIG_LOCAL   0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD    0x06054b50u
#define SIG_EOCD64  0x06064b50u
#define SIG_LOC64   0x07064b50u

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

typedef struct eocd {
    uint64_t entries, cd_size, cd_off;
    size_t pos;   /* where the (32-bit) end record starts */
} eocd;

static int find_eocd(td_ctx *ctx, const td_zip *z, eocd *out)
{
    const uint8_t *d = z->data;
    size_t lo = z->size > 22 + 65535 ? z->size - 22 - 65535 : 0;

    if (z->size < 22)
        return td_fail(ctx, TD_EFORMAT, "%s: zip truncated: %zu bytes, no end of central directory",
                       z->label, z->size);
    for (size_t p = z->size - 22 + 1; p-- > lo;) {
        if (rd32(d + p) != SIG_EOCD || p + 22 + rd16(d + p + 20) > z->size)
            continue;
        if (rd16(d + p + 4) || rd16(d + p + 6))
            return td_fail(ctx, TD_EUNSUPPORTED, "%s: multi-disk zip archives are not supported",
                           z->label);
        out->pos = p;
        out->entries = rd16(d + p + 10);
        out->cd_size = rd32(d + p + 12);
        out->cd_off = rd32(d + p + 16);
        return 0;
    }
    return td_fail(ctx, TD_EFORMAT, "%s: zip end of central directory not found (truncated file?)",
                   z->label);
}

static int read_eocd64(td_ctx *ctx, const td_zip *z, eocd *e)
{
    const uint8_t *d = z->data;
    uint64_t off;

    if (e->entries != 0xffff && e->cd_size != 0xffffffffu && e->cd_off != 0xffffffffu)
        return 0;
    if (e->pos < 20 || rd32(d + e->pos - 20) != SIG_LOC64)
        return 0;   /* the 0xffff values were real */
    off = rd64(d + e->pos - 20 + 8);
    if (off > e->pos - 20 || e->pos - 20 - off < 56 || rd32(d + off) != SIG_EOCD64)
        return td_fail(ctx, TD_EFORMAT, "%s: zip64 end of central directory record missing or "
                       "out of place", z->label);
    e->entries = rd64(d + off + 32);
    e->cd_size = rd64(d + off + 40);
    e->cd_off = rd64(d + off + 48);
    e->pos = (size_t)off;
    return 0;
}

/* Zip64 extended information: the 64-bit values of the fields set to all ones. */
static int read_zip64_extra(td_ctx *ctx, const td_zip *z, const uint8_t *x, size_t xlen,
                            td_zip_entry *e, uint32_t size32, uint32_t comp32, uint32_t off32)
{
    while (xlen >= 4) {
        uint16_t id = rd16(x), len = rd16(x + 2);
        if ((size_t)len + 4 > xlen)
            break;
        if (id == 1) {
            const uint8_t *p = x + 4, *end = x + 4 + len;
            if (size32 == 0xffffffffu) {
                if (end - p < 8) goto bad;
                e->size = rd64(p); p += 8;
            }
            if (comp32 == 0xffffffffu) {
                if (end - p < 8) goto bad;
                e->comp_size = rd64(p); p += 8;
            }
            if (off32 == 0xffffffffu) {
                if (end - p < 8) goto bad;
                e->local_off = rd64(p);
            }
            return 0;
        }
        x += 4 + len;
        xlen -= 4 + (size_t)len;
    }
    if (size32 == 0xffffffffu || comp32 == 0xffffffffu || off32 == 0xffffffffu)
        goto bad;
    return 0;
bad:
    return td_fail(ctx, TD_EFORMAT, "%s: zip entry '%.*s' has a missing or short zip64 field",
                   z->label, (int)e->name_len, e->name);
}

static int read_central(td_ctx *ctx, td_zip *z, const eocd *ec)
{
    const uint8_t *d = z->data;
    uint64_t pos = ec->cd_off, end;

    if (ec->cd_off > ec->pos || ec->cd_size > ec->pos - ec->cd_off)
        return td_fail(ctx, TD_EFORMAT, "%s: bad zip central directory: offset %llu size %llu "
                       "past its end record at %zu", z->label, (unsigned long long)ec->cd_off,
                       (unsigned long long)ec->cd_size, ec->pos);
    end = ec->cd_off + ec->cd_size;
    if (ec->entries > ec->cd_size / 46)
        return td_fail(ctx, TD_EFORMAT, "%s: bad zip central directory: %llu entries cannot fit "
                       "in %llu bytes", z->label, (unsigned long long)ec->entries,
                       (unsigned long long)ec->cd_size);
    z->e = calloc(ec->entries ? ec->entries : 1, sizeof(*z->e));
    if (!z->e)
        return td_fail(ctx, TD_ENOMEM, "%s: out of memory for the zip directory", z->label);
    for (uint64_t i = 0; i < ec->entries; i++) {
        td_zip_entry *e = &z->e[i];
        const uint8_t *c = d + pos;
        uint16_t nlen, xlen, clen, flags;
        uint32_t size32, comp32, off32;

        if (end - pos < 46 || rd32(c) != SIG_CENTRAL)
            return td_fail(ctx, TD_EFORMAT, "%s: bad zip central directory: entry %llu has no "
                           "valid header at offset %llu", z->label, (unsigned long long)i,
                           (unsigned long long)pos);
        flags = rd16(c + 8);
        e->method = rd16(c + 10);
        e->crc = rd32(c + 16);
        comp32 = rd32(c + 20);
        size32 = rd32(c + 24);
        nlen = rd16(c + 28);
        xlen = rd16(c + 30);
        clen = rd16(c + 32);
        off32 = rd32(c + 42);
        if ((uint64_t)46 + nlen + xlen + clen > end - pos)
            return td_fail(ctx, TD_EFORMAT, "%s: bad zip central directory: entry %llu runs past "
                           "the directory", z->label, (unsigned long long)i);
        e->name = (const char *)c + 46;
        e->name_len = nlen;
        e->size = size32;
        e->comp_size = comp32;
        e->local_off = off32;
        if (flags & 1)
            return td_fail(ctx, TD_EUNSUPPORTED, "%s: zip entry '%.*s' is encrypted", z->label,
                           (int)nlen, e->name);
        TD_TRY(read_zip64_extra(ctx, z, c + 46 + nlen, xlen, e, size32, comp32, off32));
        pos += 46u + nlen + xlen + clen;
        z->n++;
    }
    return 0;
}

int td_zip_open(td_ctx *ctx, const char *label, const uint8_t *data, size_t size, td_zip *z)
{
    eocd ec = { 0, 0, 0, 0 };
    int rc;

    memset(z, 0, sizeof(*z));
    z->label = label;
    z->data = data;
    z->size = size;
    rc = find_eocd(ctx, z, &ec);
    if (!rc)
        rc = read_eocd64(ctx, z, &ec);
    if (!rc)
        rc = read_central(ctx, z, &ec);
    if (rc)
        td_zip_close(z);
    return rc;
}

void td_zip_close(td_zip *z)
{
    free(z->e);
    z->e = NULL;
    z->n = 0;
}

const td_zip_entry *td_zip_find(const td_zip *z, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < z->n; i++)
        if (z->e[i].name_len == len && !memcmp(z->e[i].name, name, len))
            return &z->e[i];
    return NULL;
}

static int inflate_entry(td_ctx *ctx, const td_zip *z, const td_zip_entry *e,
                         const uint8_t *src, void **owned)
{
    z_stream s;
    uint8_t *dst;
    int zr;

    /* Deflate cannot expand data by more than about 1032:1: anything
     * claiming more is lying, and must not make us allocate for it. */
    if (e->size / 1032 > e->comp_size + 1)
        return td_fail(ctx, TD_EFORMAT, "%s: zip entry '%.*s' claims %llu bytes from %llu "
                       "compressed", z->label, (int)e->name_len, e->name,
                       (unsigned long long)e->size, (unsigned long long)e->comp_size);
    if (e->size > SIZE_MAX - 1 || !(dst = malloc(e->size ? e->size : 1)))
        return td_fail(ctx, TD_ENOMEM, "%s: out of memory inflating zip entry '%.*s' (%llu bytes)",
                       z->label, (int)e->name_len, e->name, (unsigned long long)e->size);
    memset(&s, 0, sizeof(s));
    if (inflateInit2(&s, -MAX_WBITS) != Z_OK) {
        free(dst);
        return td_fail(ctx, TD_ENOMEM, "%s: zlib initialisation failed", z->label);
    }
    /* Feed in chunks that fit zlib's 32-bit counters. */
    uint64_t in_left = e->comp_size, out_left = e->size;
    const uint8_t *in = src;
    uint8_t *out = dst;
    int progress;
    do {
        uInt ci = in_left > 0x40000000u ? 0x40000000u : (uInt)in_left;
        uInt co = out_left > 0x40000000u ? 0x40000000u : (uInt)out_left;
        s.next_in = (Bytef *)in;
        s.avail_in = ci;
        s.next_out = out;
        s.avail_out = co;
        zr = inflate(&s, Z_NO_FLUSH);
        in += ci - s.avail_in;
        in_left -= ci - s.avail_in;
        out += co - s.avail_out;
        out_left -= co - s.avail_out;
        progress = ci != s.avail_in || co != s.avail_out;
    } while (zr == Z_OK && progress);
    inflateEnd(&s);
    if (zr != Z_STREAM_END || out_left ||
        crc32_z(0, dst, (z_size_t)e->size) != e->crc) {
        free(dst);
        return td_fail(ctx, TD_EFORMAT, "%s: zip entry '%.*s': corrupt deflate data or CRC mismatch",
                       z->label, (int)e->name_len, e->name);
    }
    *owned = dst;
    return 0;
}

int td_zip_read(td_ctx *ctx, const td_zip *z, const td_zip_entry *e,
                const uint8_t **out, void **owned)
{
    const uint8_t *l;
    uint64_t data_off;

    *out = NULL;
    *owned = NULL;
    if (e->local_off > z->size || z->size - e->local_off < 30 ||
        rd32(l = z->data + e->local_off) != SIG_LOCAL)
        return td_fail(ctx, TD_EFORMAT, "%s: zip entry '%.*s': no local header at offset %llu",
                       z->label, (int)e->name_len, e->name, (unsigned long long)e->local_off);
    data_off = e->local_off + 30 + rd16(l + 26) + rd16(l + 28);
    if (data_off > z->size || e->comp_size > z->size - data_off)
        return td_fail(ctx, TD_EFORMAT, "%s: zip entry '%.*s': %llu bytes at offset %llu run past "
                       "the end of the file (truncated?)", z->label, (int)e->name_len, e->name,
                       (unsigned long long)e->comp_size, (unsigned long long)data_off);
    if (e->method == 0) {
        if (e->comp_size != e->size)
            return td_fail(ctx, TD_EFORMAT, "%s: stored zip entry '%.*s' has compressed size %llu "
                           "!= size %llu", z->label, (int)e->name_len, e->name,
                           (unsigned long long)e->comp_size, (unsigned long long)e->size);
        *out = z->data + data_off;
        return 0;
    }
    if (e->method == 8) {
        TD_TRY(inflate_entry(ctx, z, e, z->data + data_off, owned));
        *out = *owned;
        return 0;
    }
    return td_fail(ctx, TD_EUNSUPPORTED, "%s: zip entry '%.*s' uses compression method %u "
                   "(only stored and deflate are supported)", z->label, (int)e->name_len,
                   e->name, e->method);
}
