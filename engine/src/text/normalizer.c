#include "normalizer.h"

#include <stdlib.h>
#include <string.h>

static const char space_symbol[] = "\xe2\x96\x81";   /* U+2581 */

/* The charsmap is [u32 trie bytes][darts-clone double array][replacement
 * strings, NUL-terminated]; a trie value is an offset into the strings. */
typedef struct charsmap {
    const uint8_t *units;
    size_t n_units;
    const char *strings;
    size_t strings_len;
} charsmap;

static uint32_t unit_at(const charsmap *c, size_t i)
{
    const uint8_t *u = c->units + 4 * i;
    return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

static int charsmap_open(const uint8_t *map, size_t len, charsmap *c)
{
    uint32_t trie;
    if (len < 4)
        return -1;
    trie = (uint32_t)map[0] | (uint32_t)map[1] << 8 | (uint32_t)map[2] << 16 | (uint32_t)map[3] << 24;
    if (trie % 4 || trie == 0 || trie > len - 4)
        return -1;
    c->units = map + 4;
    c->n_units = trie / 4;
    c->strings = (const char *)map + 4 + trie;
    c->strings_len = len - 4 - trie;
    return 0;
}

int td_charsmap_check(td_ctx *ctx, const char *what, const uint8_t *map, size_t len)
{
    charsmap c;
    if (charsmap_open(map, len, &c) < 0)
        return td_fail(ctx, TD_EFORMAT, "%s: damaged precompiled_charsmap (%zu bytes)", what, len);
    return 0;
}

/* darts-clone commonPrefixSearch keeping the longest match: its length in
 * bytes (0: none) and its value. Out-of-range units end the search, so a
 * damaged trie cannot read outside the blob. */
static size_t longest_match(const charsmap *c, const uint8_t *key, size_t n, uint32_t *value)
{
    size_t pos = 0, best = 0;
    uint32_t unit = unit_at(c, 0);
    pos ^= (unit >> 10) << ((unit & (1u << 9)) >> 6);
    for (size_t i = 0; i < n; i++) {
        pos ^= key[i];
        if (pos >= c->n_units)
            break;
        unit = unit_at(c, pos);
        if ((unit & ((1u << 31) | 0xff)) != key[i])
            break;
        pos ^= (unit >> 10) << ((unit & (1u << 9)) >> 6);
        if (pos >= c->n_units)
            break;
        if ((unit >> 8) & 1) {
            best = i + 1;
            *value = unit_at(c, pos) & 0x7fffffffu;
        }
    }
    return best;
}

/* Length of the UTF-8 character at s (n bytes left), 0 if malformed. */
static size_t utf8_len(const uint8_t *s, size_t n)
{
    size_t len;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) { len = 2; cp = s[0] & 0x1f; }
    else if ((s[0] & 0xf0) == 0xe0) { len = 3; cp = s[0] & 0x0f; }
    else if ((s[0] & 0xf8) == 0xf0) { len = 4; cp = s[0] & 0x07; }
    else return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    /* overlong forms, surrogates and values past U+10FFFF are malformed */
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return len;
}

/* The normalized form of the prefix of s: a replacement string from the
 * charsmap, else the character itself, else U+FFFD for a malformed byte. */
static size_t normalize_prefix(const td_spm_model *m, const charsmap *c, const uint8_t *s,
                               size_t n, const char **rep, size_t *rep_len)
{
    uint32_t value = 0;
    size_t len = c->units ? longest_match(c, s, n, &value) : 0;
    if (len && value < c->strings_len) {
        *rep = c->strings + value;
        *rep_len = strnlen(*rep, c->strings_len - value);
        return len;
    }
    (void)m;
    len = utf8_len(s, n);
    if (!len) {
        *rep = "\xef\xbf\xbd";
        *rep_len = 3;
        return 1;
    }
    *rep = (const char *)s;
    *rep_len = len;
    return len;
}

typedef struct strbuf {
    char *p;
    size_t len, cap;
} strbuf;

static int put(strbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int td_normalize(td_ctx *ctx, const td_spm_model *m, const char *text, size_t n,
                 char **out, size_t *out_len)
{
    const uint8_t *s = (const uint8_t *)text, *end = s + n;
    charsmap c = { 0 };
    strbuf b = { 0 };
    const char *rep;
    size_t rep_len, used;
    int prev_space, fail = 0;

    if (m->charsmap && charsmap_open(m->charsmap, m->charsmap_len, &c) < 0)
        return td_fail(ctx, TD_EFORMAT, "damaged precompiled_charsmap");
    if (put(&b, "", 0) < 0)
        return td_fail(ctx, TD_ENOMEM, "out of memory normalizing a prompt");
    /* leading whitespace goes */
    while (m->remove_extra_whitespaces && s < end) {
        used = normalize_prefix(m, &c, s, (size_t)(end - s), &rep, &rep_len);
        if (rep_len != 1 || rep[0] != ' ')
            break;
        s += used;
    }
    if (s < end && m->add_dummy_prefix)
        fail |= put(&b, m->escape_whitespaces ? space_symbol : " ", m->escape_whitespaces ? 3 : 1);
    prev_space = m->remove_extra_whitespaces;
    while (s < end && !fail) {
        used = normalize_prefix(m, &c, s, (size_t)(end - s), &rep, &rep_len);
        if (prev_space && m->remove_extra_whitespaces)
            while (rep_len && rep[0] == ' ') {
                rep++;
                rep_len--;
            }
        for (size_t i = 0; i < rep_len && !fail; i++)
            fail |= rep[i] == ' ' && m->escape_whitespaces ? put(&b, space_symbol, 3)
                                                           : put(&b, rep + i, 1);
        if (rep_len)
            prev_space = rep[rep_len - 1] == ' ';
        s += used;
    }
    if (fail) {
        free(b.p);
        return td_fail(ctx, TD_ENOMEM, "out of memory normalizing a prompt");
    }
    /* trailing whitespace goes too */
    if (m->remove_extra_whitespaces) {
        const char *sp = m->escape_whitespaces ? space_symbol : " ";
        size_t sl = m->escape_whitespaces ? 3 : 1;
        while (b.len >= sl && !memcmp(b.p + b.len - sl, sp, sl))
            b.len -= sl;
        b.p[b.len] = '\0';
    }
    *out = b.p;
    *out_len = b.len;
    return 0;
}
