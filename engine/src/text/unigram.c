#include "unigram.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct td_unigram {
    const td_spm_model *m;
    int32_t *slots;          /* open-addressing table of piece ids, -1 empty */
    size_t mask;
    size_t max_len;          /* longest matchable piece in bytes */
    float unk_score, max_score;
    int32_t byte_ids[256];   /* <0xNN> pieces, -1 where absent */
};

static uint64_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int32_t lookup(const td_unigram *u, const char *s, size_t n)
{
    for (size_t i = hash(s, n) & u->mask;; i = (i + 1) & u->mask) {
        int32_t id = u->slots[i];
        if (id < 0)
            return -1;
        const td_spm_piece *p = &u->m->pieces[id];
        if (p->len == n && !memcmp(p->text, s, n))
            return id;
    }
}

/* Pieces Viterbi may use: sentencepiece matches normal and user-defined
 * pieces; control, unknown, byte and unused pieces are never matched. */
static int matchable(int type)
{
    return type == TD_PIECE_NORMAL || type == TD_PIECE_USER_DEFINED;
}

int td_unigram_create(td_ctx *ctx, const td_spm_model *m, td_unigram **out)
{
    td_unigram *u = calloc(1, sizeof(*u));
    size_t size = 1;
    float min_score = FLT_MAX, max_score = -FLT_MAX;

    *out = NULL;
    if (!u)
        return td_fail(ctx, TD_ENOMEM, "out of memory indexing the tokenizer");
    while (size < (size_t)m->n_pieces * 2)
        size <<= 1;
    u->m = m;
    u->mask = size - 1;
    if (!(u->slots = malloc(size * sizeof(*u->slots)))) {
        free(u);
        return td_fail(ctx, TD_ENOMEM, "out of memory indexing the tokenizer");
    }
    memset(u->slots, 0xff, size * sizeof(*u->slots));
    memset(u->byte_ids, 0xff, sizeof(u->byte_ids));
    for (int id = 0; id < m->n_pieces; id++) {
        const td_spm_piece *p = &m->pieces[id];
        unsigned b;
        char tail;
        if (p->type == TD_PIECE_BYTE && sscanf(p->text, "<0x%2X>%c", &b, &tail) == 1 && b < 256)
            u->byte_ids[b] = id;
        if (p->type == TD_PIECE_NORMAL && p->score < min_score)
            min_score = p->score;
        if (p->type == TD_PIECE_NORMAL && p->score > max_score)
            max_score = p->score;
        if (!matchable(p->type) || p->len == 0 || lookup(u, p->text, p->len) >= 0)
            continue;
        size_t i = hash(p->text, p->len) & u->mask;
        while (u->slots[i] >= 0)
            i = (i + 1) & u->mask;
        u->slots[i] = id;
        if (p->len > u->max_len)
            u->max_len = p->len;
    }
    u->unk_score = (min_score == FLT_MAX ? 0.0f : min_score) - 10.0f;
    u->max_score = max_score == -FLT_MAX ? 0.0f : max_score;
    *out = u;
    return 0;
}

void td_unigram_free(td_unigram **pu)
{
    td_unigram *u = *pu;
    if (!u)
        return;
    free(u->slots);
    free(u);
    *pu = NULL;
}

/* sentencepiece's OneCharLen: the lead byte alone decides (the normalizer
 * already turned malformed input into U+FFFD). */
static size_t char_len(uint8_t c)
{
    static const uint8_t len[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
    return len[c >> 4];
}

/* Path scores follow the model's library: f32 sums for sentencepiece, f64
 * for tokenizers, so ties between equal segmentations break as there. */
typedef struct node {
    double score;
    int64_t start;           /* -1: not reached */
    int32_t id;
} node;

static double path_score(const td_spm_model *m, float piece, double before)
{
    return m->f64_path_scores ? (double)piece + before : (double)(piece + (float)before);
}

static void emit(int32_t *ids, int cap, int *count, int32_t id)
{
    if (*count < cap)
        ids[*count] = id;
    (*count)++;
}

int td_unigram_encode(td_ctx *ctx, const td_unigram *u, const char *text, size_t n,
                      int32_t *ids, int cap, int *count)
{
    const td_spm_model *m = u->m;
    node *best = malloc((n + 1) * sizeof(*best));
    int32_t *path = malloc((n + 1) * sizeof(*path));
    int64_t *starts = malloc((n + 1) * sizeof(*starts));
    size_t pos, k = 0;

    if (!best || !path || !starts) {
        free(best);
        free(path);
        free(starts);
        return td_fail(ctx, TD_ENOMEM, "out of memory segmenting %zu bytes", n);
    }
    for (size_t i = 0; i <= n; i++)
        best[i] = (node){ 0.0, -1, -1 };
    best[0].start = 0;
    for (pos = 0; pos < n;) {
        size_t one = char_len((uint8_t)text[pos]);
        int single = 0;
        if (one > n - pos)
            one = n - pos;
        /* every piece starting here, shortest first, as the trie yields them */
        for (size_t len = 1; len <= u->max_len && len <= n - pos; len++) {
            int32_t id = lookup(u, text + pos, len);
            if (id < 0)
                continue;
            const td_spm_piece *p = &m->pieces[id];
            /* sentencepiece scores a user-defined piece so that it wins */
            float ps = p->type == TD_PIECE_USER_DEFINED ? (float)len * u->max_score - 0.1f : p->score;
            double s = path_score(m, ps, best[pos].score);
            node *t = &best[pos + len];
            if (t->start < 0 || s > t->score)
                *t = (node){ s, (int64_t)pos, id };
            if (len == one)
                single = 1;
        }
        if (!single) {
            double s = path_score(m, u->unk_score, best[pos].score);
            node *t = &best[pos + one];
            if (t->start < 0 || s > t->score)
                *t = (node){ s, (int64_t)pos, m->unk_id };
        }
        pos += one;
    }
    /* backtrack into path[] (ids) and starts[], reversed */
    for (int64_t end = (int64_t)n; end > 0; end = best[end].start) {
        path[k] = best[end].id;
        starts[k++] = best[end].start;
        if (best[end].start < 0 || best[end].start >= end)
            break;   /* unreachable with the unk fallback; guards a bad table */
    }
    for (size_t i = k; i-- > 0;) {
        int32_t id = path[i];
        size_t b = (size_t)starts[i], e = i ? (size_t)starts[i - 1] : n;
        if (id == m->unk_id && m->byte_fallback) {
            /* an unknown piece spelled out as its UTF-8 bytes */
            for (size_t j = b; j < e; j++) {
                int32_t bid = u->byte_ids[(uint8_t)text[j]];
                emit(ids, cap, count, bid >= 0 ? bid : m->unk_id);
            }
        } else if (id == m->unk_id && *count > 0 && *count <= cap && ids[*count - 1] == m->unk_id &&
                   i + 1 < k && path[i + 1] == m->unk_id) {
            continue;    /* a run of unknown pieces is one unknown */
        } else {
            emit(ids, cap, count, id);
        }
    }
    free(best);
    free(path);
    free(starts);
    return 0;
}
