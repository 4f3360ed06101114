/* safetensors writer (see safetensors_write.h). */
#include "safetensors_write.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The JSON header, offsets laid end to end; NULL on allocation failure. */
static char *header_json(const td_st_item *items, int n, size_t *len)
{
    json_t *root = json_object();
    uint64_t off = 0;
    char *s = NULL;

    if (!root)
        return NULL;
    for (int i = 0; i < n; i++) {
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        uint64_t nb = (uint64_t)td_checked_numel(items[i].ndim, items[i].shape) * td_dtype_size(items[i].dtype);
        int bad = !e || !shape || !offs;
        for (int d = 0; d < items[i].ndim && !bad; d++)
            bad = json_array_append_new(shape, json_integer(items[i].shape[d])) != 0;
        bad = bad || json_array_append_new(offs, json_integer((json_int_t)off)) ||
              json_array_append_new(offs, json_integer((json_int_t)(off + nb))) ||
              json_object_set_new(e, "dtype", json_string(td_dtype_safetensors_name(items[i].dtype))) ||
              json_object_set_new(e, "shape", shape) || json_object_set_new(e, "data_offsets", offs);
        if (bad || json_object_set_new(root, items[i].name, e)) {
            if (bad) {
                json_decref(e);
                json_decref(shape);
                json_decref(offs);
            }
            json_decref(root);
            return NULL;
        }
        off += nb;
    }
    s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (s)
        *len = strlen(s);
    return s;
}

static int check_items(td_ctx *ctx, const char *path, const td_st_item *items, int n)
{
    for (int i = 0; i < n; i++) {
        if (td_checked_numel(items[i].ndim, items[i].shape) < 0 || td_dtype_size(items[i].dtype) == 0)
            return td_fail(ctx, TD_EINVAL, "%s: tensor '%s' has a bad shape or dtype", path, items[i].name);
        for (int j = 0; j < i; j++)
            if (!strcmp(items[i].name, items[j].name))
                return td_fail(ctx, TD_EINVAL, "%s: tensor name '%s' given twice", path, items[i].name);
    }
    return 0;
}

static int write_all(td_ctx *ctx, FILE *f, const char *path, const td_st_item *items, int n,
                     td_st_fill_fn fill, void *opaque)
{
    size_t hlen = 0, padded;
    char *h = header_json(items, n, &hlen);
    uint8_t le[8];
    int rc = 0;

    if (!h)
        return td_fail(ctx, TD_ENOMEM, "%s: safetensors header", path);
    padded = (hlen + 7) / 8 * 8;
    for (int b = 0; b < 8; b++)
        le[b] = (uint8_t)((uint64_t)padded >> (8 * b));
    if (fwrite(le, 1, 8, f) != 8 || fwrite(h, 1, hlen, f) != hlen ||
        fwrite("       ", 1, padded - hlen, f) != padded - hlen)
        rc = td_fail(ctx, TD_EIO, "cannot write %s", path);
    free(h);
    for (int i = 0; i < n && rc == 0; i++) {
        size_t nb = (size_t)td_checked_numel(items[i].ndim, items[i].shape) * td_dtype_size(items[i].dtype);
        void *buf = malloc(nb ? nb : 1);
        if (!buf)
            return td_fail(ctx, TD_ENOMEM, "%s: %zu bytes for tensor '%s'", path, nb, items[i].name);
        rc = fill(opaque, i, buf, nb);
        if (rc == 0 && fwrite(buf, 1, nb, f) != nb)
            rc = td_fail(ctx, TD_EIO, "cannot write %s", path);
        free(buf);
    }
    return rc;
}

int td_safetensors_write(td_ctx *ctx, const char *path, const td_st_item *items, int n,
                         td_st_fill_fn fill, void *opaque)
{
    FILE *f;
    int rc;

    TD_TRY(check_items(ctx, path, items, n));
    f = fopen(path, "wb");
    if (!f)
        return td_fail(ctx, TD_EIO, "cannot create %s: %s", path, strerror(errno));
    rc = write_all(ctx, f, path, items, n, fill, opaque);
    if (fclose(f) != 0 && rc == 0)
        rc = td_fail(ctx, TD_EIO, "cannot write %s", path);
    if (rc < 0)
        remove(path);
    return rc;
}
