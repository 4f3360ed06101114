/*
 * PyTorch .pth files as torch.save writes them since 1.6: a zip holding
 * <archive>/data.pkl (the pickled object) and one record <archive>/data/<key>
 * per storage. Nested dicts (and lists) of tensors are flattened into dotted
 * names: {"model": {"blocks": [{"w": t}]}} gives "model.blocks.0.w"; other
 * leaves (ints, strings, None: epochs, configs) are skipped. The weight store
 * then strips wrapper prefixes such as "model." or "state_dict." for lookup.
 */
#include "weights_internal.h"
#include "pickle.h"
#include "zip.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PTH_MAX_DEPTH 64
#define PTH_MAX_NAME 1024

typedef struct record {
    const char *key;       /* into the pickle */
    size_t key_len;
    const uint8_t *data;
    uint64_t size;
} record;

typedef struct pth {
    td_ctx *ctx;
    td_weights *w;
    td_zip zip;
    char prefix[PTH_MAX_NAME];     /* "<archive>/" */
    record *rec;
    size_t n_rec, cap_rec;
    char name[PTH_MAX_NAME + 32];
} pth;

static int find_pickle(pth *p, const td_zip_entry **out)
{
    for (size_t i = 0; i < p->zip.n; i++) {
        const td_zip_entry *e = &p->zip.e[i];
        const char *slash = memchr(e->name, '/', e->name_len);
        size_t dir = slash ? (size_t)(slash - e->name) + 1 : 0;
        if (slash && e->name_len - dir == 8 && !memcmp(e->name + dir, "data.pkl", 8) &&
            dir < sizeof(p->prefix)) {
            memcpy(p->prefix, e->name, dir);
            p->prefix[dir] = '\0';
            *out = e;
            return 0;
        }
    }
    return td_fail(p->ctx, TD_EFORMAT, "%s: zip archive has no <archive>/data.pkl: not a PyTorch "
                   "checkpoint", p->w->path);
}

static int check_byteorder(pth *p)
{
    char path[PTH_MAX_NAME + 16];
    const td_zip_entry *e;
    const uint8_t *d;
    void *owned;

    snprintf(path, sizeof(path), "%sbyteorder", p->prefix);
    if (!(e = td_zip_find(&p->zip, path)))
        return 0;   /* older torch: always little-endian */
    TD_TRY(td_zip_read(p->ctx, &p->zip, e, &d, &owned));
    int little = e->size == 6 && !memcmp(d, "little", 6);
    free(owned);
    if (!little)
        return td_fail(p->ctx, TD_EUNSUPPORTED, "%s: checkpoint was saved big-endian (byteorder "
                       "record is not 'little')", p->w->path);
    return 0;
}

/* The zip record behind a storage key, read (and inflated) once per key. */
static int storage_record(pth *p, const td_pk_storage *st, const record **out)
{
    char path[PTH_MAX_NAME * 2];
    const td_zip_entry *e;
    record *r;
    void *owned;

    for (size_t i = 0; i < p->n_rec; i++)
        if (p->rec[i].key_len == st->key_len && !memcmp(p->rec[i].key, st->key, st->key_len)) {
            *out = &p->rec[i];
            return 0;
        }
    if (st->key_len > PTH_MAX_NAME || memchr(st->key, '\0', st->key_len))
        return td_fail(p->ctx, TD_EFORMAT, "%s: bad storage key", p->w->path);
    snprintf(path, sizeof(path), "%sdata/%.*s", p->prefix, (int)st->key_len, st->key);
    if (!(e = td_zip_find(&p->zip, path)))
        return td_fail(p->ctx, TD_EFORMAT, "%s: storage record '%s' missing from the archive",
                       p->w->path, path);
    if (p->n_rec == p->cap_rec) {
        size_t cap = p->cap_rec ? p->cap_rec * 2 : 16;
        record *nr = realloc(p->rec, cap * sizeof(*nr));
        if (!nr)
            return td_fail(p->ctx, TD_ENOMEM, "%s: out of memory", p->w->path);
        p->rec = nr;
        p->cap_rec = cap;
    }
    r = &p->rec[p->n_rec];
    TD_TRY(td_zip_read(p->ctx, &p->zip, e, &r->data, &owned));
    /* torch.save aligns records to 64 bytes; other zip writers may not, and
     * models read elements through typed pointers: copy those to the heap. */
    if (!owned && (uintptr_t)r->data % 16) {
        if (!(owned = malloc(e->size ? e->size : 1)))
            return td_fail(p->ctx, TD_ENOMEM, "%s: out of memory aligning record '%s'",
                           p->w->path, path);
        memcpy(owned, r->data, e->size);
        r->data = owned;
    }
    if (owned)
        TD_TRY(td_weights_adopt(p->ctx, p->w, owned));
    r->key = st->key;
    r->key_len = st->key_len;
    r->size = e->size;
    p->n_rec++;
    *out = r;
    return 0;
}

/* Bytes the view reaches: (offset + sum (size-1)*stride + 1) * elsize, all
 * overflow-checked; 0 elements reach only offset * elsize. */
static int view_extent(const td_pk_tensor *t, uint64_t *bytes)
{
    uint64_t last = (uint64_t)t->offset, es = td_dtype_size(t->dtype), term;
    int empty = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 0)
            empty = 1;
        else if (__builtin_mul_overflow((uint64_t)(t->shape[i] - 1), (uint64_t)t->stride[i], &term) ||
                 __builtin_add_overflow(last, term, &last))
            return -1;
    }
    if (empty)
        last = (uint64_t)t->offset;
    else if (__builtin_add_overflow(last, 1, &last))
        return -1;
    return __builtin_mul_overflow(last, es, bytes) ? -1 : 0;
}

static int add_tensor(pth *p, const td_pk_tensor *pt)
{
    const td_pk_storage *st = &pt->storage->st;
    const record *r;
    uint64_t declared, reach;
    td_tensor t;

    TD_TRY(storage_record(p, st, &r));
    if (__builtin_mul_overflow(st->numel, (uint64_t)td_dtype_size(st->dtype), &declared))
        return td_fail(p->ctx, TD_EFORMAT, "%s: tensor '%s': storage size overflows", p->w->path,
                       p->name);
    if (r->size < declared)
        return td_fail(p->ctx, TD_EFORMAT, "%s: tensor '%s': storage record data/%.*s holds %" PRIu64
                       " bytes but the pickle declares %" PRIu64, p->w->path, p->name,
                       (int)st->key_len, st->key, r->size, declared);
    if (view_extent(pt, &reach) || reach > declared)
        return td_fail(p->ctx, TD_EFORMAT, "%s: tensor '%s': offset %" PRId64 ", shape and strides "
                       "reach past its %" PRIu64 "-byte storage", p->w->path, p->name, pt->offset,
                       declared);
    memset(&t, 0, sizeof(t));
    t.dtype = pt->dtype;
    t.ndim = pt->ndim;
    memcpy(t.shape, pt->shape, sizeof(t.shape));
    memcpy(t.stride, pt->stride, sizeof(t.stride));
    t.data = (void *)(r->data + (uint64_t)pt->offset * td_dtype_size(pt->dtype));
    return td_weights_add(p->ctx, p->w, p->name, strlen(p->name), &t);
}

/* Depth-bounded walk; a container met twice (shared or cyclic through the
 * memo) is flattened only where it is first met. */
static int flatten(pth *p, td_pk *v, size_t name_len, int depth)
{
    int is_dict = v->kind == TD_PK_DICT;

    if (v->kind == TD_PK_TENSOR)
        return add_tensor(p, v->t);
    if (!is_dict && v->kind != TD_PK_LIST && v->kind != TD_PK_TUPLE)
        return 0;
    if (depth >= PTH_MAX_DEPTH)
        return td_fail(p->ctx, TD_EFORMAT, "%s: containers nested deeper than %d levels in data.pkl",
                       p->w->path, PTH_MAX_DEPTH);
    if (v->visited)
        return 0;
    v->visited = 1;
    for (size_t i = 0; i < v->n; i += is_dict ? 2 : 1) {
        td_pk *key = is_dict ? v->items[i] : NULL, *val = v->items[is_dict ? i + 1 : i];
        int k;
        if (val->kind != TD_PK_TENSOR && val->kind != TD_PK_DICT &&
            val->kind != TD_PK_LIST && val->kind != TD_PK_TUPLE)
            continue;
        if (!key)
            k = snprintf(p->name + name_len, PTH_MAX_NAME - name_len, "%s%zu", name_len ? "." : "", i);
        else if (key->kind == TD_PK_STR)
            k = snprintf(p->name + name_len, PTH_MAX_NAME - name_len, "%s%.*s", name_len ? "." : "",
                         (int)key->len, key->s);
        else if (key->kind == TD_PK_INT)
            k = snprintf(p->name + name_len, PTH_MAX_NAME - name_len, "%s%" PRId64,
                         name_len ? "." : "", key->i);
        else
            continue;   /* not a name: no tensor of a state dict lives there */
        if (k < 0 || (size_t)k >= PTH_MAX_NAME - name_len)
            return td_fail(p->ctx, TD_EFORMAT, "%s: tensor name longer than %d bytes", p->w->path,
                           PTH_MAX_NAME);
        TD_TRY(flatten(p, val, name_len + (size_t)k, depth + 1));
        p->name[name_len] = '\0';
    }
    return 0;
}

int td_pth_parse(td_ctx *ctx, td_weights *w, const uint8_t *data, size_t size)
{
    pth p;
    const td_zip_entry *pe = NULL;
    const uint8_t *pkl = NULL;
    void *pkl_owned = NULL;
    td_pickle pk;
    int rc;

    memset(&p, 0, sizeof(p));
    memset(&pk, 0, sizeof(pk));
    p.ctx = ctx;
    p.w = w;
    TD_TRY(td_zip_open(ctx, w->path, data, size, &p.zip));
    rc = find_pickle(&p, &pe);
    if (!rc)
        rc = check_byteorder(&p);
    if (!rc)
        rc = td_zip_read(ctx, &p.zip, pe, &pkl, &pkl_owned);
    if (!rc)
        rc = td_pickle_load(ctx, w->path, pkl, pe->size, &pk);
    if (!rc && pk.root->kind != TD_PK_DICT)
        rc = td_fail(ctx, TD_EFORMAT, "%s: data.pkl holds a %s, expected a dict of tensors",
                     w->path, pk.root->kind == TD_PK_TENSOR ? "single tensor" : "non-dict value");
    if (!rc)
        rc = flatten(&p, pk.root, 0, 0);
    td_pickle_free(&pk);
    free(pkl_owned);
    free(p.rec);
    td_zip_close(&p.zip);
    return rc;
}
