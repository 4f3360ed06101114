/*
 * turbodiff encode-text: token ids -> the [512, d_model] f32 umT5 context
 * the Wan DiT reads, written as .npy (real tokens' rows, then zero rows).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "commands.h"
#include "core/pool.h"
#include "io/npy.h"
#include "io/weights.h"
#include "text/prompt_clean.h"
#include "text/text_cache.h"
#include "text/tokenizer.h"
#include "text/umt5.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: turbodiff encode-text --t5 FILE (--tokenizer FILE --prompt TEXT | --ids \"ID ID ...\")\n"
               "         --out EMB.npy [--cache-dir DIR] [--threads N]\n"
               "  Encode a prompt (cleaned as Wan cleans it, then tokenized) or token ids\n"
               "  (EOS included, as the tokenizer emits them; 1 to %d)\n"
               "  with a umT5 encoder (Wan's .pth or transformers/ComfyUI safetensors)\n"
               "  and write the [%d, d_model] f32 context: the ids' rows, then zeros.\n"
               "  --cache-dir: reuse (and store) the embedding of the same prompt or ids with the\n"
               "  same encoder file (path, size, mtime) from an existing directory.\n",
            TD_UMT5_TEXT_LEN, TD_UMT5_TEXT_LEN);
}

typedef struct enc_args {
    const char *t5, *ids, *out, *cache_dir, *tokenizer, *prompt;
    int threads;
} enc_args;

static int parse(int argc, char **argv, enc_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        const char **dst = !strcmp(o, "--t5") ? &a->t5 : !strcmp(o, "--ids") ? &a->ids
                         : !strcmp(o, "--out") ? &a->out
                         : !strcmp(o, "--tokenizer") ? &a->tokenizer
                         : !strcmp(o, "--prompt") ? &a->prompt
                         : !strcmp(o, "--cache-dir") ? &a->cache_dir : NULL;
        char *end = NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!dst && strcmp(o, "--threads")) {
            fprintf(stderr, "turbodiff encode-text: unknown option '%s'\n", o);
            return 2;
        }
        if (!val) {
            fprintf(stderr, "turbodiff encode-text: '%s' needs a value\n", o);
            return 2;
        }
        i++;
        if (dst) {
            *dst = val;
            continue;
        }
        a->threads = (int)strtol(val, &end, 10);
        if (end == val || *end) {
            fprintf(stderr, "turbodiff encode-text: --threads '%s' is not a number\n", val);
            return 2;
        }
    }
    if (!a->t5 || !a->out || !a->ids == !a->prompt || !a->prompt != !a->tokenizer) {
        fprintf(stderr, "turbodiff encode-text: --t5, --out and either --ids or --tokenizer "
                        "with --prompt are required\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

/* Space- or comma-separated non-negative ids, at most TD_UMT5_TEXT_LEN. */
static int parse_ids(const char *s, int32_t *ids, int *n)
{
    *n = 0;
    while (*s) {
        char *end;
        long v;
        if (*s == ' ' || *s == ',' || *s == '\t' || *s == '\n') {
            s++;
            continue;
        }
        errno = 0;
        v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "turbodiff encode-text: --ids: '%.20s' is not a token id\n", s);
            return 2;
        }
        if (*n == TD_UMT5_TEXT_LEN) {
            fprintf(stderr, "turbodiff encode-text: --ids: more than %d ids\n", TD_UMT5_TEXT_LEN);
            return 2;
        }
        ids[(*n)++] = (int32_t)v;
        s = end;
    }
    if (!*n) {
        fprintf(stderr, "turbodiff encode-text: --ids is empty\n");
        return 2;
    }
    return 0;
}

/* The encoder on the ids into a tensor of be, read back into out ([512,
 * d_model] host f32, allocated here). */
static int run_encoder(td_ctx *ctx, const td_umt5 *m, td_backend *be, const int32_t *ids, int n,
                       td_tensor *out)
{
    const int64_t shape[2] = { TD_UMT5_TEXT_LEN, m->dims.d_model };
    td_tensor enc = { 0 };
    int rc = td_tensor_new(ctx, out, TD_F32, 2, shape);
    if (rc == 0)
        rc = be->ops->tensor_new(be, &enc, be->act, 2, shape);
    if (rc == 0)
        rc = td_umt5_encode(m, be, ids, n, &enc);
    if (rc == 0)
        rc = be->ops->read(be, &enc, out);
    be->ops->tensor_free(be, &enc);
    return rc;
}

/* The encoder on the ids into out ([512, d_model], allocated here). */
static int encode(td_ctx *ctx, const char *t5, const int32_t *ids, int n, td_tensor *out)
{
    td_backend *be = NULL;
    td_weights *w = NULL;
    td_umt5 *m = NULL;
    td_umt5_dims dims;
    size_t scratch;
    int rc;

    if ((rc = td_weights_open(ctx, t5, &w)) < 0)
        goto done;
    if ((rc = td_umt5_read_dims(ctx, w, &dims)) < 0)
        goto done;
    scratch = td_umt5_scratch_bytes(&dims, TD_F32, n);
    if ((rc = td_backend_cpu_create(ctx, scratch, &be)) < 0 || (rc = td_umt5_load(ctx, be, w, &m)) < 0)
        goto done;
    rc = run_encoder(ctx, m, be, ids, n, out);
done:
    td_umt5_free(&m, be);
    td_backend_destroy(&be);
    td_weights_close(&w);
    return rc;
}

/* The prompt, cleaned as Wan cleans it, into ids. */
static int tokenize(td_ctx *ctx, const enc_args *a, int32_t *ids, int *n)
{
    td_tokenizer *tok = NULL;
    char *clean = NULL;
    int rc = td_tokenizer_load(ctx, a->tokenizer, &tok);
    if (rc == 0)
        rc = td_prompt_clean(ctx, a->prompt, &clean);
    if (rc == 0)
        rc = td_tokenizer_encode(ctx, tok, clean, TD_UMT5_TEXT_LEN, ids, n);
    free(clean);
    td_tokenizer_free(&tok);
    return rc;
}

/* Canonical text of the ids ("ids:1 2 3"), the cache's prompt key. */
static void ids_key(const int32_t *ids, int n, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "ids:");
    for (int i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? " %d" : "%d", (int)ids[i]);
}

int cmd_encode_text(int argc, char **argv)
{
    enc_args a = { 0 };
    int32_t ids[TD_UMT5_TEXT_LEN];
    char identity[4200], key[TD_UMT5_TEXT_LEN * 12 + 8];
    int n = 0, rc = parse(argc, argv, &a), hit = 0;
    td_ctx ctx;
    td_pool *pool = NULL;
    td_text_cache *cache = NULL;
    td_tensor out = { 0 };

    if (rc)
        return rc == 1 ? 0 : rc;
    if (a.ids && (rc = parse_ids(a.ids, ids, &n)))
        return rc;
    td_ctx_init(&ctx);
    if (a.prompt && (rc = tokenize(&ctx, &a, ids, &n)) < 0)
        goto done;
    if ((rc = td_pool_create(&ctx, a.threads, &pool)) < 0)
        goto done;
    ctx.pool = pool;
    if (a.cache_dir) {
        if (a.prompt)
            snprintf(key, sizeof(key), "%s", a.prompt);
        else
            ids_key(ids, n, key, sizeof(key));
        if ((rc = td_text_encoder_identity(&ctx, a.t5, identity, sizeof(identity))) < 0 ||
            (rc = td_text_cache_create(&ctx, 1, a.cache_dir, &cache)) < 0 ||
            (rc = hit = td_text_cache_get(&ctx, cache, identity, key, &out)) < 0)
            goto done;
    }
    if (!hit && ((rc = encode(&ctx, a.t5, ids, n, &out)) < 0 ||
                 (cache && (rc = td_text_cache_put(&ctx, cache, identity, key, &out)) < 0)))
        goto done;
    rc = td_npy_write(&ctx, a.out, &out);
done:
    if (rc < 0)
        fprintf(stderr, "turbodiff encode-text: %s\n", ctx.errmsg);
    td_tensor_free(&out);
    td_text_cache_destroy(&cache);
    td_pool_destroy(&pool);
    return rc < 0 ? 1 : 0;
}
