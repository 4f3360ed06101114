/*
 * Text embedding cache: memory hits, LRU eviction, key separation, disk
 * entries surviving a new cache, corrupt and truncated entries ignored,
 * encoder identity following the file, and argument errors.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "text/text_cache.h"

static td_tensor random_emb(test_rng *r, int64_t rows, int64_t cols)
{
    td_ctx ctx;
    td_tensor t = { 0 };
    const int64_t shape[2] = { rows, cols };
    td_ctx_init(&ctx);
    if (td_tensor_new(&ctx, &t, TD_F32, 2, shape) == 0)
        test_fill(r, t.data, (size_t)td_numel(&t), 1.0f);
    return t;
}

/* get(id, prompt) hits and equals want. */
static int hit_equal(td_text_cache *c, const char *id, const char *prompt, const td_tensor *want)
{
    td_ctx ctx;
    td_tensor got = { 0 };
    int rc, same;
    td_ctx_init(&ctx);
    rc = td_text_cache_get(&ctx, c, id, prompt, &got);
    same = rc == 1 && got.ndim == 2 && got.shape[0] == want->shape[0] &&
           got.shape[1] == want->shape[1] && !memcmp(got.data, want->data, td_nbytes(want));
    td_tensor_free(&got);
    return same;
}

static int miss(td_text_cache *c, const char *id, const char *prompt)
{
    td_ctx ctx;
    td_tensor got = { 0 };
    td_ctx_init(&ctx);
    return td_text_cache_get(&ctx, c, id, prompt, &got) == 0 && !got.data;
}

static void test_memory(test_rng *r)
{
    td_ctx ctx;
    td_text_cache *c = NULL;
    td_tensor a = random_emb(r, 5, 8), b = random_emb(r, 5, 8), d = random_emb(r, 3, 8);

    td_ctx_init(&ctx);
    CHECK(td_text_cache_create(&ctx, 2, NULL, &c) == 0, "%s", ctx.errmsg);
    if (!c)
        goto done;
    CHECK(miss(c, "enc", "a cat"), "empty cache hit");
    CHECK(td_text_cache_put(&ctx, c, "enc", "a cat", &a) == 0, "%s", ctx.errmsg);
    CHECK(hit_equal(c, "enc", "a cat", &a), "put then get");
    CHECK(miss(c, "enc2", "a cat"), "another encoder's entry served");
    CHECK(miss(c, "enc", "a dog"), "another prompt's entry served");
    CHECK(td_text_cache_put(&ctx, c, "ab", "c", &b) == 0, "%s", ctx.errmsg);
    CHECK(miss(c, "a", "bc"), "(ab, c) and (a, bc) share a key");
    /* Touch a so b is the least recently used. */
    CHECK(hit_equal(c, "enc", "a cat", &a), "a before eviction");
    CHECK(td_text_cache_put(&ctx, c, "enc", "a dog", &d) == 0, "%s", ctx.errmsg);
    CHECK(miss(c, "ab", "c"), "LRU entry not evicted");
    CHECK(hit_equal(c, "enc", "a cat", &a) && hit_equal(c, "enc", "a dog", &d), "survivors");
    CHECK(td_text_cache_put(&ctx, c, "enc", "a cat", &b) == 0, "%s", ctx.errmsg);
    CHECK(hit_equal(c, "enc", "a cat", &b), "a second put replaces the entry");
done:
    td_text_cache_destroy(&c);
    td_tensor_free(&a);
    td_tensor_free(&b);
    td_tensor_free(&d);
}

/* The only entry file in dir into path; the number of files in dir. */
static int dir_files(const char *dir, char *path, size_t size)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            n++;
            snprintf(path, size, "%s/%s", dir, e->d_name);
        }
    if (d)
        closedir(d);
    return n;
}

static void rewrite(const char *path, long offset, int truncate_there)
{
    FILE *f = fopen(path, "r+b");
    int ch;
    if (!f)
        return;
    if (truncate_there) {
        CHECK(ftruncate(fileno(f), offset) == 0, "truncate %s", path);
    } else {
        fseek(f, offset, SEEK_SET);
        ch = fgetc(f);
        fseek(f, offset, SEEK_SET);
        fputc(ch ^ 0x40, f);
    }
    fclose(f);
}

static void test_disk(test_rng *r)
{
    char dir[] = "/tmp/td_text_cache_XXXXXX", file[4096] = "";
    td_ctx ctx;
    td_text_cache *c = NULL;
    td_tensor a = random_emb(r, 6, 4);

    td_ctx_init(&ctx);
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        goto done;
    }
    CHECK(td_text_cache_create(&ctx, 1, dir, &c) == 0, "%s", ctx.errmsg);
    CHECK(c && td_text_cache_put(&ctx, c, "enc", "prompt", &a) == 0, "%s", ctx.errmsg);
    td_text_cache_destroy(&c);
    CHECK(dir_files(dir, file, sizeof(file)) == 1 && strstr(file, ".tdemb"),
          "one entry file and no temporary left, found %s", file);

    /* A fresh cache (a new engine) finds it on disk. */
    CHECK(td_text_cache_create(&ctx, 1, dir, &c) == 0, "%s", ctx.errmsg);
    CHECK(c && hit_equal(c, "enc", "prompt", &a), "disk entry not found by a new cache");
    CHECK(c && miss(c, "enc", "prompt2"), "disk entry served for another prompt");
    td_text_cache_destroy(&c);

    /* A flipped data byte fails the checksum: a miss, then a put repairs it. */
    rewrite(file, 8 + 32 + 16 + 5, 0);
    CHECK(td_text_cache_create(&ctx, 1, dir, &c) == 0, "%s", ctx.errmsg);
    CHECK(c && miss(c, "enc", "prompt"), "corrupt entry served");
    CHECK(c && td_text_cache_put(&ctx, c, "enc", "prompt", &a) == 0, "%s", ctx.errmsg);
    td_text_cache_destroy(&c);
    CHECK(td_text_cache_create(&ctx, 1, dir, &c) == 0, "%s", ctx.errmsg);
    CHECK(c && hit_equal(c, "enc", "prompt", &a), "rewritten entry not found");
    td_text_cache_destroy(&c);

    /* A truncated entry (a crash mid-copy by some other tool) is a miss. */
    rewrite(file, 8 + 32 + 16 + 20, 1);
    CHECK(td_text_cache_create(&ctx, 1, dir, &c) == 0, "%s", ctx.errmsg);
    CHECK(c && miss(c, "enc", "prompt"), "truncated entry served");
    td_text_cache_destroy(&c);
done:
    if (file[0])
        unlink(file);
    rmdir(dir);
    td_tensor_free(&a);
}

static void test_identity_and_errors(void)
{
    char path[] = "/tmp/td_text_enc_XXXXXX", id1[512], id2[512], tiny[8];
    td_ctx ctx;
    td_text_cache *c = NULL;
    td_tensor i32 = { 0 };
    const int64_t shape[2] = { 2, 2 };
    int fd = mkstemp(path);

    td_ctx_init(&ctx);
    CHECK(fd >= 0 && write(fd, "abc", 3) == 3, "temp file");
    CHECK(td_text_encoder_identity(&ctx, path, id1, sizeof(id1)) == 0, "%s", ctx.errmsg);
    CHECK(fd >= 0 && write(fd, "defg", 4) == 4, "temp file");
    CHECK(td_text_encoder_identity(&ctx, path, id2, sizeof(id2)) == 0, "%s", ctx.errmsg);
    CHECK(strcmp(id1, id2) != 0, "identity %s unchanged by a rewrite", id1);
    CHECK(td_text_encoder_identity(&ctx, path, tiny, sizeof(tiny)) == TD_EINVAL, "short buffer");
    td_ctx_clear(&ctx);
    if (fd >= 0)
        close(fd);
    unlink(path);
    CHECK(td_text_encoder_identity(&ctx, path, id1, sizeof(id1)) == TD_EIO &&
          strstr(ctx.errmsg, path), "missing file: %s", ctx.errmsg);
    td_ctx_clear(&ctx);
    CHECK(td_text_cache_create(&ctx, 0, NULL, &c) == TD_EINVAL && !c, "capacity 0");
    td_ctx_clear(&ctx);
    CHECK(td_text_cache_create(&ctx, 1, path, &c) == TD_EIO && !c, "missing dir accepted");
    td_ctx_clear(&ctx);
    CHECK(td_text_cache_create(&ctx, 1, NULL, &c) == 0, "%s", ctx.errmsg);
    if (c && td_tensor_new(&ctx, &i32, TD_I32, 2, shape) == 0)
        CHECK(td_text_cache_put(&ctx, c, "e", "p", &i32) == TD_EINVAL, "i32 embedding stored");
    td_text_cache_destroy(&c);
    td_tensor_free(&i32);
}

int main(void)
{
    test_rng r = test_rng_seeded();
    test_memory(&r);
    test_disk(&r);
    test_identity_and_errors();
    return check_summary();
}
