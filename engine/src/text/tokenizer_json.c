/*
 * The subset of Hugging Face tokenizer.json that T5/umT5 files use, read
 * into the same td_spm_model a spiece.model gives: model Unigram (vocab of
 * [piece, score], unk_id, byte_fallback), normalizer Precompiled (the
 * sentencepiece charsmap, base64) optionally in a Sequence with
 * Strip(right) and Replace(" {2,}" -> " " or U+2581), pre_tokenizer Metaspace("\u2581") optionally
 * after WhitespaceSplit, and added_tokens (special ones become control
 * pieces). Anything else is refused by name rather than guessed at.
 * The Strip/Replace/WhitespaceSplit steps are taken as sentencepiece's
 * remove_extra_whitespaces, which is what the converter emits them for.
 */
#include "tokenizer_json.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static int base64_decode(const char *s, uint8_t **out, size_t *len)
{
    size_t n = strlen(s), o = 0;
    uint32_t acc = 0;
    int bits = 0;
    uint8_t *d = malloc(n / 4 * 3 + 3);
    if (!d)
        return -2;
    for (size_t i = 0; i < n && s[i] != '='; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0) {
            free(d);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            d[o++] = (uint8_t)(acc >> bits);
        }
    }
    *out = d;
    *len = o;
    return 0;
}

static const char *type_of(json_t *o)
{
    const char *t = json_string_value(json_object_get(o, "type"));
    return t ? t : "(no type)";
}

static int read_normalizer(td_ctx *ctx, const char *what, json_t *n, td_spm_model *m)
{
    const char *t = type_of(n);
    if (!strcmp(t, "Sequence")) {
        json_t *list = json_object_get(n, "normalizers"), *e;
        size_t i;
        if (!json_is_array(list))
            return td_fail(ctx, TD_EFORMAT, "%s: normalizer Sequence without a list", what);
        json_array_foreach(list, i, e)
            TD_TRY(read_normalizer(ctx, what, e, m));
        return 0;
    }
    if (!strcmp(t, "Precompiled")) {
        const char *b = json_string_value(json_object_get(n, "precompiled_charsmap"));
        int rc;
        if (!b || m->charsmap)
            return td_fail(ctx, TD_EFORMAT, "%s: Precompiled normalizer without a single "
                           "precompiled_charsmap string", what);
        rc = base64_decode(b, &m->charsmap, &m->charsmap_len);
        if (rc < 0)
            return td_fail(ctx, rc == -2 ? TD_ENOMEM : TD_EFORMAT,
                           "%s: precompiled_charsmap is not base64", what);
        if (m->charsmap_len == 0) {
            free(m->charsmap);
            m->charsmap = NULL;
        }
        return 0;
    }
    if (!strcmp(t, "Replace")) {
        json_t *p = json_object_get(n, "pattern");
        const char *re = json_string_value(json_object_get(p, "Regex"));
        const char *to = json_string_value(json_object_get(n, "content"));
        if (re && to && !strcmp(re, " {2,}") &&
            (!strcmp(to, " ") || !strcmp(to, "\xe2\x96\x81"))) {
            m->remove_extra_whitespaces = 1;
            return 0;
        }
        return td_fail(ctx, TD_EUNSUPPORTED, "%s: Replace normalizer other than \" {2,}\" -> "
                       "\" \" is not supported", what);
    }
    if (!strcmp(t, "Strip") && !json_is_true(json_object_get(n, "strip_left")) &&
        json_is_true(json_object_get(n, "strip_right"))) {
        m->remove_extra_whitespaces = 1;
        return 0;
    }
    return td_fail(ctx, TD_EUNSUPPORTED, "%s: normalizer type %s is not supported (T5 "
                   "tokenizer.json uses Precompiled, Strip and Replace)", what, t);
}

static int read_pre_tokenizer(td_ctx *ctx, const char *what, json_t *p, td_spm_model *m)
{
    const char *t = type_of(p);
    if (!strcmp(t, "Sequence")) {
        json_t *list = json_object_get(p, "pretokenizers"), *e;
        size_t i;
        if (!json_is_array(list))
            return td_fail(ctx, TD_EFORMAT, "%s: pre_tokenizer Sequence without a list", what);
        json_array_foreach(list, i, e)
            TD_TRY(read_pre_tokenizer(ctx, what, e, m));
        return 0;
    }
    if (!strcmp(t, "WhitespaceSplit")) {
        m->remove_extra_whitespaces = 1;
        return 0;
    }
    if (!strcmp(t, "Metaspace")) {
        const char *r = json_string_value(json_object_get(p, "replacement"));
        const char *scheme = json_string_value(json_object_get(p, "prepend_scheme"));
        json_t *aps = json_object_get(p, "add_prefix_space");
        if (!r || strcmp(r, "\xe2\x96\x81"))
            return td_fail(ctx, TD_EUNSUPPORTED, "%s: Metaspace replacement must be U+2581",
                           what);
        m->escape_whitespaces = 1;
        if (scheme && strcmp(scheme, "always") && strcmp(scheme, "never") &&
            strcmp(scheme, "first"))
            return td_fail(ctx, TD_EUNSUPPORTED, "%s: Metaspace prepend_scheme %s is not "
                           "supported", what, scheme);
        m->add_dummy_prefix = scheme ? strcmp(scheme, "never") != 0 : json_is_true(aps);
        return 0;
    }
    return td_fail(ctx, TD_EUNSUPPORTED, "%s: pre_tokenizer type %s is not supported (T5 "
                   "tokenizer.json uses Metaspace)", what, t);
}

static int is_byte_piece(const char *s)
{
    return strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>' &&
           strchr("0123456789ABCDEF", s[3]) && strchr("0123456789ABCDEF", s[4]);
}

static int read_vocab(td_ctx *ctx, const char *what, json_t *model, json_t *added,
                      td_spm_model *m)
{
    json_t *vocab = json_object_get(model, "vocab"), *e, *unk = json_object_get(model, "unk_id");
    size_t i, n = json_array_size(vocab);

    if (!json_is_array(vocab) || n == 0 || n > (size_t)INT32_MAX / 2)
        return td_fail(ctx, TD_EFORMAT, "%s: Unigram model without a vocab list", what);
    /* room for special added tokens past the vocab (umT5's <extra_id_N>) */
    m->pieces = calloc(n + json_array_size(added), sizeof(*m->pieces));
    if (!m->pieces)
        return td_fail(ctx, TD_ENOMEM, "%s: out of memory for %zu pieces", what, n);
    m->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    m->f64_path_scores = 1;
    m->unk_id = json_is_integer(unk) ? (int)json_integer_value(unk) : -1;
    if (m->unk_id < 0 || (size_t)m->unk_id >= n)
        return td_fail(ctx, TD_EFORMAT, "%s: unk_id missing or outside the %zu pieces", what, n);
    json_array_foreach(vocab, i, e) {
        const char *s = json_string_value(json_array_get(e, 0));
        json_t *sc = json_array_get(e, 1);
        if (json_array_size(e) != 2 || !s || !json_is_number(sc))
            return td_fail(ctx, TD_EFORMAT, "%s: vocab entry %zu is not [piece, score]", what, i);
        m->pieces[i].len = json_string_length(json_array_get(e, 0));
        m->pieces[i].text = malloc(m->pieces[i].len + 1);
        m->n_pieces = (int)i + 1;
        if (!m->pieces[i].text)
            return td_fail(ctx, TD_ENOMEM, "%s: out of memory", what);
        memcpy(m->pieces[i].text, s, m->pieces[i].len + 1);
        if (memchr(s, 0, m->pieces[i].len))
            return td_fail(ctx, TD_EFORMAT, "%s: vocab entry %zu holds a NUL", what, i);
        m->pieces[i].score = (float)json_number_value(sc);   /* spm's f32 scores: exact */
        m->pieces[i].type = (int)i == m->unk_id ? TD_PIECE_UNKNOWN
                          : m->byte_fallback && is_byte_piece(s) ? TD_PIECE_BYTE
                          : TD_PIECE_NORMAL;
    }
    json_array_foreach(added, i, e) {
        json_t *id = json_object_get(e, "id");
        const char *content = json_string_value(json_object_get(e, "content"));
        int special = json_is_true(json_object_get(e, "special"));
        json_int_t v = json_is_integer(id) ? json_integer_value(id) : -1;
        if (v == m->n_pieces && special && content) {
            /* A special token past the Unigram vocab, such as umT5's
             * <extra_id_N>: an id of its own that text never segments to. */
            td_spm_piece *pc = &m->pieces[m->n_pieces];
            pc->len = strlen(content);
            if (!(pc->text = malloc(pc->len + 1)))
                return td_fail(ctx, TD_ENOMEM, "%s: out of memory", what);
            memcpy(pc->text, content, pc->len + 1);
            pc->type = TD_PIECE_CONTROL;
            m->n_pieces++;
            continue;
        }
        if (v < 0 || v >= m->n_pieces)
            return td_fail(ctx, TD_EUNSUPPORTED, "%s: added token %zu (id %lld) is outside the "
                           "Unigram vocab and is not the next special token", what, i, (long long)v);
        if (special && v != m->unk_id)
            m->pieces[v].type = TD_PIECE_CONTROL;
    }
    return 0;
}

int td_spm_model_from_json(td_ctx *ctx, const char *what, const uint8_t *data, size_t size,
                           td_spm_model *m)
{
    json_error_t err;
    json_t *root = json_loadb((const char *)data, size, 0, &err), *model, *n, *p;
    int rc = 0;

    memset(m, 0, sizeof(*m));
    m->eos_id = -1;
    if (!root)
        return td_fail(ctx, TD_EFORMAT, "%s: bad JSON at line %d: %s", what, err.line, err.text);
    model = json_object_get(root, "model");
    if (!json_is_object(model) || strcmp(type_of(model), "Unigram"))
        rc = td_fail(ctx, TD_EUNSUPPORTED, "%s: model type %s is not supported (only "
                     "Unigram, as T5/umT5 use)", what,
                     json_is_object(model) ? type_of(model) : "(missing)");
    if (rc == 0)
        rc = read_vocab(ctx, what, model, json_object_get(root, "added_tokens"), m);
    n = json_object_get(root, "normalizer");
    if (rc == 0 && n && !json_is_null(n))
        rc = read_normalizer(ctx, what, n, m);
    p = json_object_get(root, "pre_tokenizer");
    if (rc == 0 && (!json_is_object(p)))
        rc = td_fail(ctx, TD_EUNSUPPORTED, "%s: no Metaspace pre_tokenizer", what);
    if (rc == 0)
        rc = read_pre_tokenizer(ctx, what, p, m);
    if (rc == 0 && !m->escape_whitespaces)
        rc = td_fail(ctx, TD_EUNSUPPORTED, "%s: no Metaspace pre_tokenizer", what);
    json_decref(root);
    if (rc < 0)
        td_spm_model_free(m);
    return rc;
}
