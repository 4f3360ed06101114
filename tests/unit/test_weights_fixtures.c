/*
 * Reads back the committed files of tests/data/weights/ (written by
 * tests/parity/gen_weight_fixtures.py with torch.save and safetensors) and
 * checks every tensor's dtype, shape and SHA-256 against expected.tsv, then
 * the store's lookups: canonical names, shape checks, prefixes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/sha256.h"
#include "io/weights.h"
#include "io/weights_internal.h"

#define DIR TD_ROOT "/tests/data/weights/"

static void shape_str(const td_tensor *t, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int d = 0; d < t->ndim; d++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", d ? "," : "", (long long)t->shape[d]);
}

/* Each row of expected.tsv: the tensor exists under its stored name with that
 * dtype, shape and hash; each file holds exactly its rows. */
static void check_expected(void)
{
    FILE *f = fopen(DIR "expected.tsv", "r");
    char line[1024], cur[256] = "";
    td_weights *w = NULL;
    td_ctx ctx;
    int rows = 0, files = 0;

    CHECK(f != NULL, "cannot open expected.tsv");
    if (!f)
        return;
    td_ctx_init(&ctx);
    while (fgets(line, sizeof(line), f)) {
        char *file, *name, *dtype, *shape, *hash, *save;
        if (line[0] == '#')
            continue;
        line[strcspn(line, "\n")] = '\0';
        file = strtok_r(line, "\t", &save);
        name = strtok_r(NULL, "\t", &save);
        dtype = strtok_r(NULL, "\t", &save);
        /* An empty shape column (0-d tensor) makes two tabs in a row. */
        shape = save && *save == '\t' ? (save++, "") : strtok_r(NULL, "\t", &save);
        hash = strtok_r(NULL, "\t", &save);
        if (!file || !name || !dtype || !shape || !hash) {
            CHECK(0, "malformed expected.tsv row");
            continue;
        }
        if (strcmp(file, cur)) {
            if (w)
                td_weights_close(&w);
            char path[512];
            snprintf(path, sizeof(path), DIR "%s", file);
            snprintf(cur, sizeof(cur), "%s", file);
            int rc = td_weights_open(&ctx, path, &w);
            CHECK(rc == 0, "open %s: %s", path, ctx.errmsg);
            files++;
        }
        if (!w)
            continue;
        const td_tensor *t = td_weights_find(w, name);
        CHECK(t != NULL, "%s: tensor %s missing", file, name);
        if (!t)
            continue;
        char got_shape[128], hex[65];
        uint8_t dig[32];
        shape_str(t, got_shape, sizeof(got_shape));
        td_sha256_tensor(t, dig);
        td_sha256_hex(dig, hex);
        CHECK(!strcmp(td_dtype_name(t->dtype), dtype), "%s:%s dtype %s, want %s", file, name,
              td_dtype_name(t->dtype), dtype);
        CHECK(!strcmp(got_shape, shape), "%s:%s shape %s, want %s", file, name, got_shape, shape);
        CHECK(!strcmp(hex, hash), "%s:%s hash %s, want %s", file, name, hex, hash);
        rows++;
    }
    td_weights_close(&w);
    fclose(f);
    CHECK(files >= 6 && rows >= 40, "only %d files, %d tensors checked", files, rows);
}

static void check_lookups(void)
{
    td_ctx ctx;
    td_weights *w;
    td_tensor t;

    td_ctx_init(&ctx);
    CHECK(td_weights_open(&ctx, DIR "state_dict.pth", &w) == 0, "%s", ctx.errmsg);
    if (!w)
        return;
    /* "net." is a wrapper: both spellings find the tensor. */
    CHECK(td_weights_find(w, "net.proj.weight") == td_weights_find(w, "proj.weight"),
          "canonical and stored names differ");
    CHECK(td_weights_get(&ctx, w, "proj.weight", 2, (int64_t[]){ 3, 5 }, &t) == 0, "%s", ctx.errmsg);
    CHECK(t.owns == 0 && t.dtype == TD_F32, "view owns %d dtype %d", t.owns, t.dtype);
    CHECK(td_weights_get(&ctx, w, "proj.weight", 2, (int64_t[]){ -1, 5 }, &t) == 0, "wildcard dim");
    CHECK(td_weights_get(&ctx, w, "proj.weight", 2, (int64_t[]){ 5, 3 }, &t) == TD_ESHAPE &&
          strstr(ctx.errmsg, "proj.weight") && strstr(ctx.errmsg, "[3,5]") &&
          strstr(ctx.errmsg, "[5,3]"), "shape error: %s", ctx.errmsg);
    td_ctx_clear(&ctx);
    CHECK(td_weights_getf(&ctx, w, &t, -1, NULL, "missing.%d.weight", 4) == TD_ENOTFOUND &&
          strstr(ctx.errmsg, "missing.4.weight") && strstr(ctx.errmsg, "state_dict.pth"),
          "not-found error: %s", ctx.errmsg);
    td_ctx_clear(&ctx);
    CHECK(td_weights_has_prefix(w, "extra.") && td_weights_has_prefix(w, "norm.") &&
          !td_weights_has_prefix(w, "blocks."), "has_prefix");
    td_weights_close(&w);
    CHECK(w == NULL, "close clears the handle");

    /* Nested checkpoints: "state_dict.model.blocks.0.w" is "blocks.0.w". */
    CHECK(td_weights_open(&ctx, DIR "nested.pth", &w) == 0, "%s", ctx.errmsg);
    if (w) {
        CHECK(td_weights_find(w, "blocks.0.w") != NULL, "nested canonical name");
        CHECK(td_weights_find(w, "ema.1.k") != NULL && td_weights_find(w, "ema.0") != NULL,
              "list items named by index");
        CHECK(td_weights_count(w) == 4, "%d tensors, want 4", td_weights_count(w));
        td_weights_close(&w);
    }
}

/* The same file from a heap buffer the store takes over. */
static void check_open_bytes(void)
{
    FILE *f = fopen(DIR "views.pth", "rb");
    td_ctx ctx;
    td_weights *w;
    long n;
    uint8_t *buf;

    td_ctx_init(&ctx);
    CHECK(f != NULL, "open views.pth");
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n);
    CHECK(buf && fread(buf, 1, (size_t)n, f) == (size_t)n, "read views.pth");
    fclose(f);
    CHECK(td_weights_open_bytes(&ctx, "views(mem)", buf, (size_t)n, TD_BYTES_HEAP, &w) == 0,
          "%s", ctx.errmsg);
    if (w) {
        const td_tensor *t = td_weights_find(w, "t"), *b = td_weights_find(w, "base");
        CHECK(t && b && t->data == b->data && t->stride[0] == 1 && t->stride[1] == 8,
              "transposed view shares the base storage");
        CHECK(!strcmp(td_weights_path(w), "views(mem)"), "label");
        td_weights_close(&w);
    }
}

int main(void)
{
    check_expected();
    check_lookups();
    check_open_bytes();
    return check_summary();
}
