/*
 * .npy: "\x93NUMPY", version, header length (2 bytes in 1.0, 4 in 2.0/3.0),
 * a Python dict literal {'descr': '<f4', 'fortran_order': False,
 * 'shape': (2, 3), } padded to 64 bytes, then the raw C-order data.
 */
#include "npy.h"
#include "mmap_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *descr; td_dtype dt; } npy_types[] = {
    { "f4", TD_F32 }, { "f8", TD_F64 }, { "f2", TD_F16 }, { "i8", TD_I64 },
    { "i4", TD_I32 }, { "i1", TD_I8 }, { "u1", TD_U8 }, { "b1", TD_BOOL },
};

/* The value text after 'key': in the header, or NULL. */
static const char *dict_value(const char *h, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof(pat), "'%s'", key);
    const char *p = strstr(h, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ')
        p++;
    return p;
}

static int parse_header(td_ctx *ctx, const char *path, const char *h, td_dtype *dt,
                        int *ndim, int64_t *shape)
{
    const char *d = dict_value(h, "descr"), *f = dict_value(h, "fortran_order"),
               *s = dict_value(h, "shape");
    char descr[16];
    size_t i;

    if (!d || !f || !s || *d != '\'' || *s != '(')
        return td_fail(ctx, TD_EFORMAT, "%s: .npy header lacks descr, fortran_order or shape", path);
    for (i = 0; d[1 + i] && d[1 + i] != '\'' && i < sizeof(descr) - 1; i++)
        descr[i] = d[1 + i];
    descr[i] = '\0';
    if (!strncmp(f, "True", 4))
        return td_fail(ctx, TD_EUNSUPPORTED, "%s: Fortran-order .npy arrays are not supported "
                       "(save with np.ascontiguousarray)", path);
    if (strncmp(f, "False", 5))
        return td_fail(ctx, TD_EFORMAT, "%s: .npy fortran_order is neither True nor False", path);
    if (descr[0] == '>')
        return td_fail(ctx, TD_EUNSUPPORTED, "%s: big-endian .npy dtype '%s' is not supported",
                       path, descr);
    int found = 0;
    for (size_t k = 0; k < sizeof(npy_types) / sizeof(npy_types[0]); k++)
        if ((descr[0] == '<' || descr[0] == '|' || descr[0] == '=') &&
            !strcmp(descr + 1, npy_types[k].descr)) {
            *dt = npy_types[k].dt;
            found = 1;
        }
    if (!found)
        return td_fail(ctx, TD_EUNSUPPORTED, "%s: .npy dtype '%s' is not supported", path, descr);
    *ndim = 0;
    for (s++;;) {
        char *end;
        while (*s == ' ' || *s == ',')
            s++;
        if (*s == ')')
            break;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 0 || errno)
            return td_fail(ctx, TD_EFORMAT, "%s: bad .npy shape '%.40s'", path, s);
        if (*ndim == TD_MAX_DIMS)
            return td_fail(ctx, TD_EUNSUPPORTED, "%s: .npy array has more than %d dims", path,
                           TD_MAX_DIMS);
        shape[(*ndim)++] = v;
        s = end;
    }
    return 0;
}

static int read_bytes(td_ctx *ctx, const char *path, const uint8_t *d, size_t n, td_tensor *out)
{
    size_t hlen, hstart;
    char *h;
    td_dtype dt = TD_F32;
    int ndim = 0, rc;
    int64_t shape[TD_MAX_DIMS];

    if (n < 10 || memcmp(d, "\x93NUMPY", 6))
        return td_fail(ctx, TD_EFORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", path);
    if (d[6] < 1 || d[6] > 3)
        return td_fail(ctx, TD_EUNSUPPORTED, "%s: .npy format version %d.%d is not supported",
                       path, d[6], d[7]);
    if (d[6] == 1) {
        hlen = (size_t)d[8] | (size_t)d[9] << 8;
        hstart = 10;
    } else {
        if (n < 12)
            return td_fail(ctx, TD_EFORMAT, "%s: .npy file truncated in its header", path);
        hlen = (size_t)d[8] | (size_t)d[9] << 8 | (size_t)d[10] << 16 | (size_t)d[11] << 24;
        hstart = 12;
    }
    if (hlen > n - hstart)
        return td_fail(ctx, TD_EFORMAT, "%s: .npy header length %zu past the end of the file", path,
                       hlen);
    if (!(h = malloc(hlen + 1)))
        return td_fail(ctx, TD_ENOMEM, "%s: out of memory", path);
    memcpy(h, d + hstart, hlen);
    h[hlen] = '\0';
    rc = parse_header(ctx, path, h, &dt, &ndim, shape);
    free(h);
    TD_TRY(rc);

    int64_t numel = td_checked_numel(ndim, shape);
    size_t es = td_dtype_size(dt), nbytes, have = n - hstart - hlen;
    if (numel < 0 || __builtin_mul_overflow((size_t)numel, es, &nbytes))
        return td_fail(ctx, TD_EFORMAT, "%s: .npy shape overflows", path);
    if (have != nbytes)
        return td_fail(ctx, TD_EFORMAT, "%s: .npy data is %zu bytes, shape and dtype need %zu%s",
                       path, have, nbytes, have < nbytes ? " (truncated)" : "");
    const uint8_t *src = d + hstart + hlen;
    td_dtype keep = dt == TD_F64 || dt == TD_F16 ? TD_F32 : dt;
    TD_TRY(td_tensor_new(ctx, out, keep, ndim, shape));
    if (keep == dt) {
        memcpy(out->data, src, nbytes);
        return 0;
    }
    /* The data need not be aligned for its dtype (the header length is
     * the writer's choice): widen from an aligned copy. */
    void *tmp = malloc(nbytes ? nbytes : 1);
    if (!tmp) {
        td_tensor_free(out);
        return td_fail(ctx, TD_ENOMEM, "%s: out of memory", path);
    }
    memcpy(tmp, src, nbytes);
    td_to_f32(dt, tmp, out->data, (size_t)numel);
    free(tmp);
    return 0;
}

int td_npy_read(td_ctx *ctx, const char *path, td_tensor *out)
{
    td_bytes b;
    TD_TRY(td_bytes_map(ctx, path, &b));
    int rc = read_bytes(ctx, path, b.data, b.size, out);
    td_bytes_release(&b);
    return rc;
}

static int write_data(FILE *f, const td_tensor *t)
{
    size_t es = td_dtype_size(t->dtype);
    int64_t numel = td_numel(t);

    if (td_is_contiguous(t))
        return fwrite(t->data, es, (size_t)numel, f) == (size_t)numel ? 0 : -1;
    int64_t idx[TD_MAX_DIMS] = { 0 };
    for (int64_t i = 0; i < numel; i++) {
        int64_t off = 0;
        for (int d = 0; d < t->ndim; d++)
            off += idx[d] * t->stride[d];
        if (fwrite((const uint8_t *)t->data + off * (int64_t)es, es, 1, f) != 1)
            return -1;
        for (int d = t->ndim - 1; d >= 0 && ++idx[d] == t->shape[d]; d--)
            idx[d] = 0;
    }
    return 0;
}

int td_npy_write(td_ctx *ctx, const char *path, const td_tensor *t)
{
    const char *descr = NULL;
    char hdr[512], shape[256];
    size_t used = 0, hlen;
    FILE *f;

    for (size_t k = 0; k < sizeof(npy_types) / sizeof(npy_types[0]); k++)
        if (npy_types[k].dt == t->dtype)
            descr = npy_types[k].descr;
    if (!descr)
        return td_fail(ctx, TD_EUNSUPPORTED, "%s: numpy has no dtype for %s", path,
                       td_dtype_name(t->dtype));
    shape[0] = '\0';
    for (int i = 0; i < t->ndim; i++)
        used += (size_t)snprintf(shape + used, sizeof(shape) - used, "%lld%s",
                                 (long long)t->shape[i], t->ndim == 1 ? "," : i + 1 < t->ndim ? ", " : "");
    hlen = (size_t)snprintf(hdr, sizeof(hdr), "{'descr': '%c%s', 'fortran_order': False, 'shape': (%s), }",
                            descr[1] == '1' ? '|' : '<', descr, shape);
    /* Pad with spaces and a newline so the data starts 64-byte aligned. */
    size_t total = (10 + hlen + 1 + 63) / 64 * 64;
    memset(hdr + hlen, ' ', total - 10 - hlen - 1);
    hdr[total - 10 - 1] = '\n';
    hlen = total - 10;

    if (!(f = fopen(path, "wb")))
        return td_fail(ctx, TD_EIO, "%s: cannot create: %s", path, strerror(errno));
    uint8_t pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)hlen, (uint8_t)(hlen >> 8) };
    int bad = fwrite(pre, 1, 10, f) != 10 || fwrite(hdr, 1, hlen, f) != hlen || write_data(f, t);
    if (fclose(f) || bad)
        return td_fail(ctx, TD_EIO, "%s: write failed: %s", path, strerror(errno));
    return 0;
}

int td_npy_read_bytes(td_ctx *ctx, const char *label, const void *data, size_t size,
                      td_tensor *out)
{
    return read_bytes(ctx, label, data, size, out);
}
