/*
 * Text embedding cache: in-memory LRU plus optional verified disk entries.
 * See text_cache.h for the key and the file format.
 */
#include "text_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/sha256.h"

#define MAGIC "TDEMB001"
#define HEAD_BYTES (8 + 32 + 16)   /* magic, key, rows and cols (u64 LE) */

typedef struct entry {
    uint8_t key[32];
    td_tensor emb;        /* owned; emb.data NULL when the slot is empty */
    uint64_t last_use;
} entry;

struct td_text_cache {
    entry *slots;
    int capacity;
    uint64_t tick;
    char *dir;
};

int td_text_encoder_identity(td_ctx *ctx, const char *path, char *buf, size_t size)
{
    struct stat st;
    char *abs;
    int n;

    /* The absolute path, so runs from other directories share entries. */
    if (stat(path, &st) != 0 || !(abs = realpath(path, NULL)))
        return td_fail(ctx, TD_EIO, "%s: cannot stat the encoder file: %s", path, strerror(errno));
    n = snprintf(buf, size, "%s|%lld|%lld", abs, (long long)st.st_size,
                 (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);
    free(abs);
    if (n < 0 || (size_t)n >= size)
        return td_fail(ctx, TD_EINVAL, "%s: encoder identity longer than %zu bytes", path, size);
    return 0;
}

int td_text_cache_create(td_ctx *ctx, int capacity, const char *dir, td_text_cache **out)
{
    td_text_cache *c;
    struct stat st;

    *out = NULL;
    if (capacity < 1)
        return td_fail(ctx, TD_EINVAL, "text cache: capacity %d must be at least 1", capacity);
    if (dir && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        return td_fail(ctx, TD_EIO, "text cache: %s is not a directory", dir);
    c = calloc(1, sizeof(*c));
    if (c)
        c->slots = calloc((size_t)capacity, sizeof(*c->slots));
    if (c && dir)
        c->dir = strdup(dir);
    if (!c || !c->slots || (dir && !c->dir)) {
        td_text_cache_destroy(&c);
        return td_fail(ctx, TD_ENOMEM, "text cache: out of memory");
    }
    c->capacity = capacity;
    *out = c;
    return 0;
}

void td_text_cache_destroy(td_text_cache **c)
{
    if (!c || !*c)
        return;
    for (int i = 0; (*c)->slots && i < (*c)->capacity; i++)
        td_tensor_free(&(*c)->slots[i].emb);
    free((*c)->slots);
    free((*c)->dir);
    free(*c);
    *c = NULL;
}

/* Length-prefixed, so ("ab", "c") and ("a", "bc") differ. */
static void make_key(const char *encoder_id, const char *prompt, uint8_t key[32])
{
    td_sha256 s;
    const char *parts[2] = { encoder_id, prompt };
    td_sha256_init(&s);
    for (int i = 0; i < 2; i++) {
        uint64_t n = strlen(parts[i]);
        uint8_t len[8];
        for (int b = 0; b < 8; b++)
            len[b] = (uint8_t)(n >> (8 * b));
        td_sha256_update(&s, len, 8);
        td_sha256_update(&s, parts[i], n);
    }
    td_sha256_final(&s, key);
}

static void entry_path(const td_text_cache *c, const uint8_t key[32], char *buf, size_t size)
{
    char hex[65];
    td_sha256_hex(key, hex);
    snprintf(buf, size, "%s/%s.tdemb", c->dir, hex);
}

static int copy_f32(td_ctx *ctx, const td_tensor *src, td_tensor *dst)
{
    TD_TRY(td_tensor_new(ctx, dst, TD_F32, src->ndim, src->shape));
    memcpy(dst->data, src->data, td_nbytes(dst));
    return 0;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int b = 0; b < 8; b++)
        p[b] = (uint8_t)(v >> (8 * b));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int b = 0; b < 8; b++)
        v |= (uint64_t)p[b] << (8 * b);
    return v;
}

/* 1 with out filled when the file is a complete entry for key, else 0. */
static int read_entry(td_ctx *ctx, const td_text_cache *c, const uint8_t key[32], td_tensor *out)
{
    char path[4096];
    uint8_t head[HEAD_BYTES], sum[32], want[32];
    uint64_t rows, cols;
    struct stat st;
    td_sha256 s;
    FILE *f;
    int ok = 0;

    entry_path(c, key, path, sizeof(path));
    f = fopen(path, "rb");
    if (!f)
        return 0;
    if (fstat(fileno(f), &st) != 0 || fread(head, 1, HEAD_BYTES, f) != HEAD_BYTES ||
        memcmp(head, MAGIC, 8) || memcmp(head + 8, key, 32))
        goto done;
    rows = get_u64(head + 40);
    cols = get_u64(head + 48);
    if (rows == 0 || cols == 0 || rows > (1u << 20) || cols > (1u << 20) ||
        (uint64_t)st.st_size != HEAD_BYTES + rows * cols * 4 + 32)
        goto done;
    {
        const int64_t shape[2] = { (int64_t)rows, (int64_t)cols };
        if (td_tensor_new(ctx, out, TD_F32, 2, shape) < 0)
            goto done;
    }
    if (fread(out->data, 1, td_nbytes(out), f) != td_nbytes(out) || fread(sum, 1, 32, f) != 32)
        goto done;
    td_sha256_init(&s);
    td_sha256_update(&s, head, HEAD_BYTES);
    td_sha256_update(&s, out->data, td_nbytes(out));
    td_sha256_final(&s, want);
    ok = !memcmp(sum, want, 32);
done:
    fclose(f);
    if (!ok) {
        td_tensor_free(out);
        td_log(ctx, TD_LOG_DEBUG, "text cache: %s is not a valid entry, ignored", path);
    }
    return ok;
}

static int write_entry(td_ctx *ctx, const td_text_cache *c, const uint8_t key[32],
                       const td_tensor *emb)
{
    char path[4096], tmp[4096 + 16];
    uint8_t head[HEAD_BYTES], sum[32];
    td_sha256 s;
    FILE *f;
    int fd, ok;

    entry_path(c, key, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
    memcpy(head, MAGIC, 8);
    memcpy(head + 8, key, 32);
    put_u64(head + 40, (uint64_t)emb->shape[0]);
    put_u64(head + 48, (uint64_t)emb->shape[1]);
    td_sha256_init(&s);
    td_sha256_update(&s, head, HEAD_BYTES);
    td_sha256_update(&s, emb->data, td_nbytes(emb));
    td_sha256_final(&s, sum);
    fd = mkstemp(tmp);
    f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        td_log(ctx, TD_LOG_WARNING, "text cache: cannot create %s: %s", tmp, strerror(errno));
        return 0;
    }
    ok = fwrite(head, 1, HEAD_BYTES, f) == HEAD_BYTES &&
         fwrite(emb->data, 1, td_nbytes(emb), f) == td_nbytes(emb) &&
         fwrite(sum, 1, 32, f) == 32 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        td_log(ctx, TD_LOG_WARNING, "text cache: cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    return 0;
}

static entry *find(td_text_cache *c, const uint8_t key[32])
{
    for (int i = 0; i < c->capacity; i++)
        if (c->slots[i].emb.data && !memcmp(c->slots[i].key, key, 32))
            return &c->slots[i];
    return NULL;
}

/* An empty slot, else the least recently used one (emptied). */
static entry *victim(td_text_cache *c)
{
    entry *v = &c->slots[0];
    for (int i = 0; i < c->capacity; i++) {
        if (!c->slots[i].emb.data)
            return &c->slots[i];
        if (c->slots[i].last_use < v->last_use)
            v = &c->slots[i];
    }
    td_tensor_free(&v->emb);
    return v;
}

/* Take ownership of emb into the memory tier. */
static void remember(td_text_cache *c, const uint8_t key[32], td_tensor *emb)
{
    entry *e = victim(c);
    memcpy(e->key, key, 32);
    e->emb = *emb;
    e->last_use = ++c->tick;
    *emb = (td_tensor){ 0 };
}

int td_text_cache_get(td_ctx *ctx, td_text_cache *c, const char *encoder_id, const char *prompt,
                      td_tensor *out)
{
    uint8_t key[32];
    td_tensor disk = { 0 };
    entry *e;

    make_key(encoder_id, prompt, key);
    if ((e = find(c, key))) {
        e->last_use = ++c->tick;
        TD_TRY(copy_f32(ctx, &e->emb, out));
        return 1;
    }
    if (!c->dir || !read_entry(ctx, c, key, &disk))
        return 0;
    if (copy_f32(ctx, &disk, out) < 0) {
        td_tensor_free(&disk);
        return ctx->err;
    }
    remember(c, key, &disk);
    return 1;
}

int td_text_cache_put(td_ctx *ctx, td_text_cache *c, const char *encoder_id, const char *prompt,
                      const td_tensor *emb)
{
    char s[96];
    uint8_t key[32];
    td_tensor copy = { 0 };
    entry *e;

    if (emb->dtype != TD_F32 || emb->ndim != 2 || !td_is_contiguous(emb) || !td_numel(emb))
        return td_fail(ctx, TD_EINVAL, "text cache: embedding %s must be contiguous 2-D f32",
                       td_shape_str(emb, s, sizeof(s)));
    make_key(encoder_id, prompt, key);
    TD_TRY(copy_f32(ctx, emb, &copy));
    if ((e = find(c, key))) {
        td_tensor_free(&e->emb);
        e->emb = copy;
        e->last_use = ++c->tick;
    } else {
        remember(c, key, &copy);
    }
    return c->dir ? write_entry(ctx, c, key, emb) : 0;
}
