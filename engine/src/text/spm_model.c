/*
 * sentencepiece's ModelProto, read straight off the protobuf wire format:
 * we need four messages' worth of fields and no protobuf library. Unknown
 * fields are skipped by wire type; every length is checked against the
 * bytes left, so a damaged file is an error, never a read past the end.
 */
#include "spm_model.h"

#include <stdlib.h>
#include <string.h>

typedef struct pb {
    const uint8_t *p, *end;
} pb;

static int varint(pb *b, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end)
            return -1;
        uint8_t c = *b->p++;
        r |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* One field: its number, wire type, and for length-delimited fields the
 * sub-buffer; varints and fixed32 values land in *v. */
static int field(pb *b, uint32_t *num, int *wt, uint64_t *v, pb *sub)
{
    uint64_t key, len;
    if (varint(b, &key) < 0 || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
        return -1;
    *num = (uint32_t)(key >> 3);
    *wt = (int)(key & 7);
    switch (*wt) {
    case 0:
        return varint(b, v);
    case 1:
        if (b->end - b->p < 8)
            return -1;
        b->p += 8;
        return 0;
    case 2:
        if (varint(b, &len) < 0 || len > (uint64_t)(b->end - b->p))
            return -1;
        sub->p = b->p;
        sub->end = b->p + len;
        b->p += len;
        return 0;
    case 5:
        if (b->end - b->p < 4)
            return -1;
        *v = (uint64_t)b->p[0] | (uint64_t)b->p[1] << 8 | (uint64_t)b->p[2] << 16 | (uint64_t)b->p[3] << 24;
        b->p += 4;
        return 0;
    default:
        return -1;
    }
}

static int parse_piece(pb b, td_spm_piece *out)
{
    uint32_t num;
    int wt;
    uint64_t v = 0;
    pb sub = { 0 };
    out->type = TD_PIECE_NORMAL;
    while (b.p < b.end) {
        if (field(&b, &num, &wt, &v, &sub) < 0)
            return -1;
        if (num == 1 && wt == 2) {
            free(out->text);
            out->len = (size_t)(sub.end - sub.p);
            if (!(out->text = malloc(out->len + 1)))
                return -2;
            memcpy(out->text, sub.p, out->len);
            out->text[out->len] = '\0';
        } else if (num == 2 && wt == 5) {
            uint32_t u = (uint32_t)v;
            memcpy(&out->score, &u, 4);
        } else if (num == 3 && wt == 0) {
            out->type = (int)v;
        }
    }
    return out->text ? 0 : -1;
}

static int parse_trainer(td_ctx *ctx, const char *what, pb b, td_spm_model *m)
{
    uint32_t num;
    int wt;
    uint64_t v = 0;
    pb sub;
    while (b.p < b.end) {
        if (field(&b, &num, &wt, &v, &sub) < 0)
            return td_fail(ctx, TD_EFORMAT, "%s: damaged trainer_spec", what);
        if (wt != 0)
            continue;
        if (num == 3 && v != 1)   /* ModelType: 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR */
            return td_fail(ctx, TD_EUNSUPPORTED, "%s: SentencePiece model type %llu is not "
                           "unigram (umT5's tokenizer is unigram)", what, (unsigned long long)v);
        if (num == 35)
            m->byte_fallback = v != 0;
        else if (num == 40)
            m->unk_id = (int)(int32_t)v;
        else if (num == 42)
            m->eos_id = (int)(int32_t)v;
    }
    return 0;
}

static int parse_normalizer(td_ctx *ctx, const char *what, pb b, td_spm_model *m)
{
    uint32_t num;
    int wt;
    uint64_t v = 0;
    pb sub = { 0 };
    while (b.p < b.end) {
        if (field(&b, &num, &wt, &v, &sub) < 0)
            return td_fail(ctx, TD_EFORMAT, "%s: damaged normalizer_spec", what);
        if (num == 2 && wt == 2 && sub.end > sub.p) {
            free(m->charsmap);
            m->charsmap_len = (size_t)(sub.end - sub.p);
            if (!(m->charsmap = malloc(m->charsmap_len)))
                return td_fail(ctx, TD_ENOMEM, "%s: out of memory", what);
            memcpy(m->charsmap, sub.p, m->charsmap_len);
        } else if (wt == 0 && num == 3) {
            m->add_dummy_prefix = v != 0;
        } else if (wt == 0 && num == 4) {
            m->remove_extra_whitespaces = v != 0;
        } else if (wt == 0 && num == 5) {
            m->escape_whitespaces = v != 0;
        }
    }
    return 0;
}

int td_spm_model_parse(td_ctx *ctx, const char *what, const uint8_t *data, size_t size,
                       td_spm_model *m)
{
    pb b = { data, data + size }, sub = { 0 };
    uint32_t num;
    int wt, cap = 0, rc = 0;
    uint64_t v = 0;

    memset(m, 0, sizeof(*m));
    /* proto2 defaults of the fields we read */
    m->unk_id = 0;
    m->eos_id = 2;
    m->add_dummy_prefix = m->remove_extra_whitespaces = m->escape_whitespaces = 1;
    while (rc == 0 && b.p < b.end) {
        if (field(&b, &num, &wt, &v, &sub) < 0) {
            rc = td_fail(ctx, TD_EFORMAT, "%s: not a SentencePiece model (damaged protobuf at "
                         "byte %td)", what, b.p - data);
            break;
        }
        if (wt != 2)
            continue;
        if (num == 1) {
            if (m->n_pieces == cap) {
                int ncap = cap ? cap * 2 : 1024;
                td_spm_piece *np = realloc(m->pieces, (size_t)ncap * sizeof(*np));
                if (!np) {
                    rc = td_fail(ctx, TD_ENOMEM, "%s: out of memory", what);
                    break;
                }
                m->pieces = np;
                cap = ncap;
            }
            memset(&m->pieces[m->n_pieces], 0, sizeof(m->pieces[0]));
            int prc = parse_piece(sub, &m->pieces[m->n_pieces]);
            m->n_pieces++;
            if (prc < 0)
                rc = td_fail(ctx, prc == -2 ? TD_ENOMEM : TD_EFORMAT, "%s: damaged piece %d",
                             what, m->n_pieces - 1);
        } else if (num == 2) {
            rc = parse_trainer(ctx, what, sub, m);
        } else if (num == 3) {
            rc = parse_normalizer(ctx, what, sub, m);
        }
    }
    if (rc == 0 && m->n_pieces == 0)
        rc = td_fail(ctx, TD_EFORMAT, "%s: not a SentencePiece model (no pieces)", what);
    if (rc == 0 && (m->unk_id < 0 || m->unk_id >= m->n_pieces))
        rc = td_fail(ctx, TD_EFORMAT, "%s: unk_id %d outside the %d pieces", what, m->unk_id,
                     m->n_pieces);
    if (rc < 0)
        td_spm_model_free(m);
    return rc;
}

void td_spm_model_free(td_spm_model *m)
{
    for (int i = 0; i < m->n_pieces; i++)
        free(m->pieces[i].text);
    free(m->pieces);
    free(m->charsmap);
    memset(m, 0, sizeof(*m));
}
