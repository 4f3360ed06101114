#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/weights.h"
#include "normalizer.h"
#include "spm_model.h"
#include "tokenizer_json.h"
#include "unigram.h"

struct td_tokenizer {
    td_spm_model model;
    td_unigram *unigram;
    int32_t eos;
};

/* from the bytes of a spiece.model (json = 0) or a tokenizer.json */
static int load_model(td_ctx *ctx, const char *what, const uint8_t *data, size_t size,
                      int json, td_tokenizer **out)
{
    td_tokenizer *t = calloc(1, sizeof(*t));
    int rc;

    *out = NULL;
    if (!t)
        return td_fail(ctx, TD_ENOMEM, "out of memory loading %s", what);
    rc = json ? td_spm_model_from_json(ctx, what, data, size, &t->model)
              : td_spm_model_parse(ctx, what, data, size, &t->model);
    if (rc == 0 && t->model.charsmap)
        rc = td_charsmap_check(ctx, what, t->model.charsmap, t->model.charsmap_len);
    if (rc == 0)
        rc = td_unigram_create(ctx, &t->model, &t->unigram);
    if (rc == 0) {
        /* </s> by name, as the HF tokenizer appends it; the spec's eos_id
         * when a model names it otherwise */
        t->eos = -1;
        for (int i = 0; i < t->model.n_pieces && t->eos < 0; i++)
            if (!strcmp(t->model.pieces[i].text, "</s>"))
                t->eos = i;
        if (t->eos < 0)
            t->eos = t->model.eos_id;
        if (t->eos < 0 || t->eos >= t->model.n_pieces)
            rc = td_fail(ctx, TD_EFORMAT, "%s: no </s> piece and eos_id %d is out of range",
                         what, t->model.eos_id);
    }
    if (rc < 0) {
        td_tokenizer_free(&t);
        return rc;
    }
    *out = t;
    return 0;
}

int td_tokenizer_load_bytes(td_ctx *ctx, const char *what, const uint8_t *data, size_t size,
                            td_tokenizer **out)
{
    return load_model(ctx, what, data, size, 0, out);
}

int td_tokenizer_load_json(td_ctx *ctx, const char *what, const char *json, size_t size,
                           td_tokenizer **out)
{
    return load_model(ctx, what, (const uint8_t *)json, size, 1, out);
}

static int read_file(td_ctx *ctx, const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    long len;
    if (!f)
        return td_fail(ctx, TD_EIO, "cannot open tokenizer %s", path);
    if (fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        return td_fail(ctx, TD_EIO, "cannot read tokenizer %s", path);
    }
    *size = (size_t)len;
    *data = malloc(*size ? *size : 1);
    if (!*data || fread(*data, 1, *size, f) != *size) {
        fclose(f);
        free(*data);
        *data = NULL;
        return td_fail(ctx, *size && !*data ? TD_ENOMEM : TD_EIO, "cannot read tokenizer %s", path);
    }
    fclose(f);
    return 0;
}

/* A safetensors file starts with its u64 header length and then '{'. */
static int is_safetensors(const uint8_t *d, size_t n)
{
    return n > 9 && d[8] == '{' && d[7] == 0 && d[6] == 0;
}

int td_tokenizer_load(td_ctx *ctx, const char *path, td_tokenizer **out)
{
    uint8_t *data = NULL;
    size_t size = 0;
    int rc;

    *out = NULL;
    TD_TRY(read_file(ctx, path, &data, &size));
    if (size && data[0] == '{') {
        rc = load_model(ctx, path, data, size, 1, out);
    } else if (is_safetensors(data, size)) {
        td_weights *w = NULL;
        const td_tensor *t;
        rc = td_weights_open(ctx, path, &w);
        if (rc == 0 && !(t = td_weights_find(w, "spiece_model")))
            rc = td_fail(ctx, TD_ENOTFOUND, "%s: no spiece_model tensor (the SentencePiece "
                         "model ComfyUI embeds); give the tokenizer file", path);
        else if (rc == 0 && (t->dtype != TD_U8 || t->ndim != 1))
            rc = td_fail(ctx, TD_EFORMAT, "%s: spiece_model must be a 1-D uint8 tensor", path);
        else if (rc == 0)
            rc = td_tokenizer_load_bytes(ctx, path, t->data, (size_t)t->shape[0], out);
        td_weights_close(&w);
    } else {
        rc = td_tokenizer_load_bytes(ctx, path, data, size, out);
    }
    free(data);
    return rc;
}

void td_tokenizer_free(td_tokenizer **pt)
{
    td_tokenizer *t = *pt;
    if (!t)
        return;
    td_unigram_free(&t->unigram);
    td_spm_model_free(&t->model);
    free(t);
    *pt = NULL;
}

int td_tokenizer_vocab_size(const td_tokenizer *tok)
{
    return tok->model.n_pieces;
}

int td_tokenizer_encode(td_ctx *ctx, const td_tokenizer *tok, const char *text, int max_len,
                        int32_t *ids, int *n)
{
    char *norm = NULL;
    size_t len = 0;
    int count = 0, rc;

    if (max_len < 1)
        return td_fail(ctx, TD_EINVAL, "tokenizer: max_len %d leaves no room for </s>", max_len);
    TD_TRY(td_normalize(ctx, &tok->model, text, strlen(text), &norm, &len));
    rc = td_unigram_encode(ctx, tok->unigram, norm, len, ids, max_len - 1, &count);
    free(norm);
    TD_TRY(rc);
    if (count > max_len - 1)
        count = max_len - 1;
    ids[count++] = tok->eos;
    *n = count;
    return 0;
}
