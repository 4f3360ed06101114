/*
 * safetensors: 8-byte little-endian header length, a JSON header, then the
 * data section. Validated as strictly as the reference reader (the Rust
 * `safetensors` crate): header at most 100 MB, an object of
 * {"name": {"dtype", "shape", "data_offsets"}} plus an optional
 * string-to-string "__metadata__", no duplicate keys, tensors laid end to
 * end from offset 0 with no gap and no overlap, covering the data section
 * exactly, each exactly dtype size x element count bytes.
 */
#include "weights_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER (100u * 1000u * 1000u)

typedef struct st_info {
    const char *name;       /* owned by the JSON tree */
    td_tensor t;
    uint64_t begin, end;
} st_info;

static int cmp_begin(const void *a, const void *b)
{
    const st_info *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int check_metadata(td_ctx *ctx, const char *path, json_t *meta)
{
    const char *k;
    json_t *v;

    if (!json_is_object(meta))
        return td_fail(ctx, TD_EFORMAT, "%s: __metadata__ is not an object", path);
    json_object_foreach(meta, k, v)
        if (!json_is_string(v))
            return td_fail(ctx, TD_EFORMAT, "%s: __metadata__ value for '%s' is not a string",
                           path, k);
    return 0;
}

static int nonneg_int(json_t *j, uint64_t *out)
{
    if (!json_is_integer(j) || json_integer_value(j) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(j);
    return 0;
}

static int parse_info(td_ctx *ctx, const char *path, const char *name, json_t *v, st_info *info)
{
    json_t *dt = json_object_get(v, "dtype");
    json_t *shape = json_object_get(v, "shape");
    json_t *offs = json_object_get(v, "data_offsets");
    int dtype;
    int64_t dims[TD_MAX_DIMS];
    size_t ndim;
    uint64_t nbytes;

    if (!json_is_object(v))
        return td_fail(ctx, TD_EFORMAT, "%s: tensor '%s': header entry is not an object", path, name);
    if (!json_is_string(dt))
        return td_fail(ctx, TD_EFORMAT, "%s: tensor '%s': dtype missing or not a string", path, name);
    dtype = td_dtype_from_safetensors(json_string_value(dt));
    if (dtype < 0)
        return td_fail(ctx, TD_EUNSUPPORTED, "%s: tensor '%s': unknown dtype '%s'", path, name,
                       json_string_value(dt));
    if (!json_is_array(shape))
        return td_fail(ctx, TD_EFORMAT, "%s: tensor '%s': shape missing or not an array", path, name);
    ndim = json_array_size(shape);
    if (ndim > TD_MAX_DIMS)
        return td_fail(ctx, TD_EUNSUPPORTED, "%s: tensor '%s': %zu dims, at most %d supported",
                       path, name, ndim, TD_MAX_DIMS);
    for (size_t i = 0; i < ndim; i++) {
        uint64_t d;
        if (nonneg_int(json_array_get(shape, i), &d) || d > INT64_MAX)
            return td_fail(ctx, TD_EFORMAT, "%s: tensor '%s': dim %zu is not a non-negative integer",
                           path, name, i);
        dims[i] = (int64_t)d;
    }
    int64_t numel = td_checked_numel((int)ndim, dims);
    if (numel < 0 || __builtin_mul_overflow((uint64_t)numel, td_dtype_size(dtype), &nbytes))
        return td_fail(ctx, TD_EFORMAT, "%s: tensor '%s': byte size of its shape overflows", path, name);
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        nonneg_int(json_array_get(offs, 0), &info->begin) ||
        nonneg_int(json_array_get(offs, 1), &info->end))
        return td_fail(ctx, TD_EFORMAT, "%s: tensor '%s': data_offsets is not [begin, end] of "
                       "non-negative integers", path, name);
    if (info->end < info->begin)
        return td_fail(ctx, TD_EFORMAT, "%s: tensor '%s': data_offsets end %llu before begin %llu",
                       path, name, (unsigned long long)info->end, (unsigned long long)info->begin);
    if (info->end - info->begin != nbytes)
        return td_fail(ctx, TD_EFORMAT, "%s: tensor '%s': data_offsets span %llu bytes, "
                       "dtype and shape need %llu", path, name,
                       (unsigned long long)(info->end - info->begin), (unsigned long long)nbytes);
    info->name = name;
    info->t = td_view(NULL, (td_dtype)dtype, (int)ndim, dims);
    return 0;
}

static int check_layout(td_ctx *ctx, const char *path, st_info *info, size_t n, uint64_t data_size)
{
    uint64_t pos = 0;

    qsort(info, n, sizeof(*info), cmp_begin);
    for (size_t i = 0; i < n; i++) {
        if (info[i].begin < pos)
            return td_fail(ctx, TD_EFORMAT, "%s: tensor '%s' at offset %llu overlaps the tensor "
                           "before it (ending at %llu)", path, info[i].name,
                           (unsigned long long)info[i].begin, (unsigned long long)pos);
        if (info[i].begin > pos)
            return td_fail(ctx, TD_EFORMAT, "%s: gap of %llu bytes before tensor '%s' at offset %llu",
                           path, (unsigned long long)(info[i].begin - pos), info[i].name,
                           (unsigned long long)info[i].begin);
        if (info[i].end > data_size)
            return td_fail(ctx, TD_EFORMAT, "%s: tensor '%s' ends at %llu, past the end of the "
                           "data section (%llu bytes)", path, info[i].name,
                           (unsigned long long)info[i].end, (unsigned long long)data_size);
        pos = info[i].end;
    }
    if (pos != data_size)
        return td_fail(ctx, TD_EFORMAT, "%s: tensors cover %llu bytes of a %llu-byte data section",
                       path, (unsigned long long)pos, (unsigned long long)data_size);
    return 0;
}

static int parse_header(td_ctx *ctx, td_weights *w, json_t *root, const uint8_t *base,
                        uint64_t data_size)
{
    const char *k;
    json_t *v;
    st_info *info;
    size_t n = 0;
    int rc = 0;

    if (!json_is_object(root))
        return td_fail(ctx, TD_EFORMAT, "%s: safetensors header is not a JSON object", w->path);
    info = calloc(json_object_size(root) + 1, sizeof(*info));
    if (!info)
        return td_fail(ctx, TD_ENOMEM, "%s: out of memory for the header", w->path);
    json_object_foreach(root, k, v) {
        if (!strcmp(k, "__metadata__"))
            rc = check_metadata(ctx, w->path, v);
        else
            rc = parse_info(ctx, w->path, k, v, &info[n++]);
        if (rc)
            break;
    }
    if (!rc)
        rc = check_layout(ctx, w->path, info, n, data_size);
    for (size_t i = 0; !rc && i < n; i++) {
        const uint8_t *src = base + info[i].begin;
        size_t es = td_dtype_size(info[i].t.dtype), nbytes = (size_t)(info[i].end - info[i].begin);
        info[i].t.data = (void *)src;
        /* Models read elements through typed pointers: a tensor that a
         * writer left misaligned for its dtype gets an aligned copy. */
        if ((uintptr_t)src % es) {
            void *copy = malloc(nbytes);
            if (!copy) {
                rc = td_fail(ctx, TD_ENOMEM, "%s: out of memory aligning tensor '%s'", w->path,
                             info[i].name);
                break;
            }
            memcpy(copy, src, nbytes);
            if ((rc = td_weights_adopt(ctx, w, copy)))
                break;
            info[i].t.data = copy;
        }
        rc = td_weights_add(ctx, w, info[i].name, strlen(info[i].name), &info[i].t);
    }
    free(info);
    return rc;
}

int td_safetensors_parse(td_ctx *ctx, td_weights *w, const uint8_t *data, size_t size)
{
    uint64_t hlen = 0;
    json_error_t jerr;
    json_t *root;
    int rc;

    if (size < 8)
        return td_fail(ctx, TD_EFORMAT, "%s: file too short (%zu bytes) for a safetensors header",
                       w->path, size);
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | data[i];
    if (hlen > ST_MAX_HEADER)
        return td_fail(ctx, TD_EFORMAT, "%s: safetensors header length %llu exceeds the 100 MB limit",
                       w->path, (unsigned long long)hlen);
    if (hlen > size - 8)
        return td_fail(ctx, TD_EFORMAT, "%s: safetensors header length %llu past the end of the "
                       "file (%zu bytes)", w->path, (unsigned long long)hlen, size);
    root = json_loadb((const char *)data + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return td_fail(ctx, TD_EFORMAT, "%s: bad safetensors header JSON: %s (line %d, column %d)",
                       w->path, jerr.text, jerr.line, jerr.column);
    rc = parse_header(ctx, w, root, data + 8 + hlen, size - 8 - hlen);
    json_decref(root);
    return rc;
}
