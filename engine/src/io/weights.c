/*
 * The weight store: format detection, name -> tensor lookup and the
 * canonical names models use.
 */
#include "weights_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Checkpoint wrappers, stripped repeatedly from the front of a name so that
 * "state_dict.module.net.blocks.0..." and "model.diffusion_model.blocks.0..."
 * both become "blocks.0...". Longest first: "model.diffusion_model." must win
 * over "model.". None of the model families we read (Wan, diffusers, HF T5
 * "encoder."/"shared.", Wan VAE "encoder."/"decoder."/"conv1.") has its own
 * top-level module called net, module, model or state_dict. */
static const char *const wrapper_prefixes[] = {
    "model.diffusion_model.", "state_dict.", "module.", "model.", "net.",
};

static const char *canonical_name(const char *name)
{
    for (;;) {
        int stripped = 0;
        for (size_t i = 0; i < sizeof(wrapper_prefixes) / sizeof(wrapper_prefixes[0]); i++) {
            size_t n = strlen(wrapper_prefixes[i]);
            if (!strncmp(name, wrapper_prefixes[i], n) && name[n]) {
                name += n;
                stripped = 1;
                break;
            }
        }
        if (!stripped)
            return name;
    }
}

int td_weights_add(td_ctx *ctx, td_weights *w, const char *name, size_t len,
                   const td_tensor *t)
{
    td_wentry *e;

    if (memchr(name, '\0', len))
        return td_fail(ctx, TD_EFORMAT, "%s: tensor name contains a NUL byte", w->path);
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 64;
        td_wentry *ne = realloc(w->e, (size_t)cap * sizeof(*ne));
        if (!ne)
            return td_fail(ctx, TD_ENOMEM, "%s: out of memory for %d tensor entries", w->path, cap);
        w->e = ne;
        w->cap = cap;
    }
    e = &w->e[w->n];
    e->name = malloc(len + 1);
    if (!e->name)
        return td_fail(ctx, TD_ENOMEM, "%s: out of memory for a tensor name", w->path);
    memcpy(e->name, name, len);
    e->name[len] = '\0';
    e->canon = canonical_name(e->name);
    e->t = *t;
    e->t.owns = 0;
    w->n++;
    return 0;
}

int td_weights_adopt(td_ctx *ctx, td_weights *w, void *buf)
{
    if (w->n_owned == w->cap_owned) {
        int cap = w->cap_owned ? w->cap_owned * 2 : 8;
        void **no = realloc(w->owned, (size_t)cap * sizeof(*no));
        if (!no) {
            free(buf);
            return td_fail(ctx, TD_ENOMEM, "%s: out of memory", w->path);
        }
        w->owned = no;
        w->cap_owned = cap;
    }
    w->owned[w->n_owned++] = buf;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(td_wentry *const *)a)->name, (*(td_wentry *const *)b)->name);
}

static int cmp_canon(const void *a, const void *b)
{
    const td_wentry *x = *(td_wentry *const *)a, *y = *(td_wentry *const *)b;
    int c = strcmp(x->canon, y->canon);
    return c ? c : (x < y ? -1 : x > y);
}

static int build_index(td_ctx *ctx, td_weights *w)
{
    if (!w->n)
        return 0;
    w->by_name = malloc((size_t)w->n * sizeof(*w->by_name));
    w->by_canon = malloc((size_t)w->n * sizeof(*w->by_canon));
    if (!w->by_name || !w->by_canon)
        return td_fail(ctx, TD_ENOMEM, "%s: out of memory for the name index", w->path);
    for (int i = 0; i < w->n; i++)
        w->by_name[i] = w->by_canon[i] = &w->e[i];
    qsort(w->by_name, (size_t)w->n, sizeof(*w->by_name), cmp_name);
    qsort(w->by_canon, (size_t)w->n, sizeof(*w->by_canon), cmp_canon);
    for (int i = 1; i < w->n; i++)
        if (!strcmp(w->by_name[i - 1]->name, w->by_name[i]->name))
            return td_fail(ctx, TD_EFORMAT, "%s: duplicate tensor name '%s'", w->path,
                           w->by_name[i]->name);
    return 0;
}

static int detect_and_parse(td_ctx *ctx, td_weights *w)
{
    const uint8_t *d = w->file.data;
    size_t n = w->file.size;

    if (n >= 2 && d[0] == 'P' && d[1] == 'K')
        return td_pth_parse(ctx, w, d, n);
    if (n >= 2 && d[0] == 0x80 && d[1] <= 5)
        return td_fail(ctx, TD_EUNSUPPORTED,
                       "%s: legacy PyTorch format (torch.save with "
                       "_use_new_zipfile_serialization=False) is not supported; "
                       "re-save with a recent torch", w->path);
    if (n < 8)
        return td_fail(ctx, TD_EFORMAT, "%s: file too short (%zu bytes) to be a weight file",
                       w->path, n);
    /* A safetensors header starts with '{'; without one, only a header
     * length that fits the file makes it worth parsing as safetensors. */
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | d[i];
    if (n > 8 && d[8] != '{' && hlen > n - 8)
        return td_fail(ctx, TD_EFORMAT, "%s: unrecognised weight file format "
                       "(not safetensors, not a PyTorch zip checkpoint)", w->path);
    return td_safetensors_parse(ctx, w, d, n);
}

static int open_common(td_ctx *ctx, td_weights *w, td_weights **out)
{
    int rc = detect_and_parse(ctx, w);
    if (!rc)
        rc = build_index(ctx, w);
    if (rc) {
        td_weights_close(&w);
        return rc;
    }
    *out = w;
    return 0;
}

static td_weights *new_store(td_ctx *ctx, const char *label)
{
    td_weights *w = calloc(1, sizeof(*w));
    if (w && !(w->path = strdup(label))) {
        free(w);
        w = NULL;
    }
    if (!w)
        td_fail(ctx, TD_ENOMEM, "%s: out of memory", label);
    return w;
}

int td_weights_open(td_ctx *ctx, const char *path, td_weights **out)
{
    td_weights *w;

    *out = NULL;
    if (!(w = new_store(ctx, path)))
        return TD_ENOMEM;
    int rc = td_bytes_map(ctx, path, &w->file);
    if (rc) {
        td_weights_close(&w);
        return rc;
    }
    return open_common(ctx, w, out);
}

int td_weights_open_bytes(td_ctx *ctx, const char *label, const void *data,
                          size_t size, td_bytes_kind kind, td_weights **out)
{
    td_weights *w;

    *out = NULL;
    if (!(w = new_store(ctx, label))) {
        if (kind == TD_BYTES_HEAP)
            free((void *)data);
        return TD_ENOMEM;
    }
    w->file.data = data;
    w->file.size = size;
    w->file.kind = kind;
    return open_common(ctx, w, out);
}

void td_weights_close(td_weights **pw)
{
    td_weights *w = *pw;
    if (!w)
        return;
    for (int i = 0; i < w->n; i++)
        free(w->e[i].name);
    for (int i = 0; i < w->n_owned; i++)
        free(w->owned[i]);
    free(w->owned);
    free(w->e);
    free(w->by_name);
    free(w->by_canon);
    td_bytes_release(&w->file);
    free(w->path);
    free(w);
    *pw = NULL;
}

const char *td_weights_path(const td_weights *w)
{
    return w->path;
}

int td_weights_count(const td_weights *w)
{
    return w->n;
}

const char *td_weights_name(const td_weights *w, int i)
{
    return i >= 0 && i < w->n ? w->e[i].name : NULL;
}

const td_tensor *td_weights_tensor(const td_weights *w, int i)
{
    return i >= 0 && i < w->n ? &w->e[i].t : NULL;
}

/* Lower bound of key in an index sorted by name or canon. */
static int lower_bound(td_wentry *const *idx, int n, const char *key, int canon)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        const char *s = canon ? idx[mid]->canon : idx[mid]->name;
        if (strcmp(s, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Exact stored names win; among tensors sharing a canonical name (a file with
 * both "model.x" and "x"), the first in file order. */
const td_tensor *td_weights_find(const td_weights *w, const char *name)
{
    int i;

    if (!w->n)
        return NULL;
    i = lower_bound(w->by_name, w->n, name, 0);
    if (i < w->n && !strcmp(w->by_name[i]->name, name))
        return &w->by_name[i]->t;
    i = lower_bound(w->by_canon, w->n, name, 1);
    if (i < w->n && !strcmp(w->by_canon[i]->canon, name))
        return &w->by_canon[i]->t;
    return NULL;
}

static void dims_str(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t used = 0;
    used += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? "," : "",
                                 (long long)shape[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

int td_weights_get(td_ctx *ctx, const td_weights *w, const char *name,
                   int ndim, const int64_t *shape, td_tensor *out)
{
    const td_tensor *t = td_weights_find(w, name);

    if (!t)
        return td_fail(ctx, TD_ENOTFOUND, "%s: tensor '%s' not found", w->path, name);
    if (ndim >= 0) {
        int ok = t->ndim == ndim;
        for (int i = 0; ok && i < ndim; i++)
            ok = shape[i] == -1 || shape[i] == t->shape[i];
        if (!ok) {
            char want[160], got[160];
            dims_str(want, sizeof(want), ndim, shape);
            dims_str(got, sizeof(got), t->ndim, t->shape);
            return td_fail(ctx, TD_ESHAPE, "%s: tensor '%s' has shape %s, expected %s",
                           w->path, name, got, want);
        }
    }
    *out = *t;
    return 0;
}

int td_weights_getf(td_ctx *ctx, const td_weights *w, td_tensor *out,
                    int ndim, const int64_t *shape, const char *fmt, ...)
{
    char name[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(name))
        return td_fail(ctx, TD_EINVAL, "%s: tensor name too long (format '%s')", w->path, fmt);
    return td_weights_get(ctx, w, name, ndim, shape, out);
}

int td_weights_has_prefix(const td_weights *w, const char *prefix)
{
    size_t n = strlen(prefix);
    if (!w->n)
        return 0;
    /* Names with the prefix are contiguous in canonical order. */
    int i = lower_bound(w->by_canon, w->n, prefix, 1);
    return i < w->n && !strncmp(w->by_canon[i]->canon, prefix, n);
}
