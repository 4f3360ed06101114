#include "prompt_clean.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *name; uint32_t cp; } entities[] = {
    { "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' }, { "apos", '\'' },
    { "nbsp", 0xa0 }, { "ndash", 0x2013 }, { "mdash", 0x2014 }, { "lsquo", 0x2018 },
    { "rsquo", 0x2019 }, { "ldquo", 0x201c }, { "rdquo", 0x201d }, { "hellip", 0x2026 },
    { "copy", 0xa9 }, { "reg", 0xae }, { "deg", 0xb0 }, { "times", 0xd7 },
};

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* One entity at s (after '&'), as Python's html.unescape reads it with the
 * terminating ';': its code point and length, 0 if none. */
static size_t entity(const char *s, uint32_t *cp)
{
    if (s[0] == '#') {
        int hex = s[1] == 'x' || s[1] == 'X';
        char *end;
        unsigned long v = strtoul(s + 1 + hex, &end, hex ? 16 : 10);
        if (end == s + 1 + hex || *end != ';' || end - s > 10)
            return 0;
        /* html.unescape maps 0, surrogates and out-of-range values to U+FFFD */
        *cp = v == 0 || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff) ? 0xfffd : (uint32_t)v;
        return (size_t)(end - s) + 1;
    }
    for (size_t i = 0; i < sizeof(entities) / sizeof(entities[0]); i++) {
        size_t n = strlen(entities[i].name);
        if (!strncmp(s, entities[i].name, n) && s[n] == ';') {
            *cp = entities[i].cp;
            return n + 1;
        }
    }
    return 0;
}

/* html.unescape, in place: an entity's UTF-8 is never longer than it. */
static void unescape(char *s)
{
    char *o = s;
    while (*s) {
        uint32_t cp;
        size_t n;
        if (*s == '&' && (n = entity(s + 1, &cp))) {
            o += put_utf8(o, cp);
            s += n + 1;
        } else {
            *o++ = *s++;
        }
    }
    *o = '\0';
}

/* Length of the whitespace character at s (Python's str.isspace), or 0. */
static size_t space_len(const uint8_t *s)
{
    if (*s == ' ' || (*s >= '\t' && *s <= '\r') || (*s >= 0x1c && *s <= 0x1f))
        return 1;
    if (s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0))
        return 2;
    if (s[0] == 0xe1 && s[1] == 0x9a && s[2] == 0x80)          /* U+1680 */
        return 3;
    if (s[0] == 0xe2 && s[1] == 0x80 && ((s[2] >= 0x80 && s[2] <= 0x8a) || s[2] == 0xa8 ||
                                         s[2] == 0xa9 || s[2] == 0xaf))
        return 3;                                              /* U+2000-200A, 2028, 2029, 202F */
    if (s[0] == 0xe2 && s[1] == 0x81 && s[2] == 0x9f)          /* U+205F */
        return 3;
    if (s[0] == 0xe3 && s[1] == 0x80 && s[2] == 0x80)          /* U+3000 */
        return 3;
    return 0;
}

int td_prompt_clean(td_ctx *ctx, const char *text, char **out)
{
    size_t n = strlen(text);
    char *buf = malloc(n + 1), *o;
    const uint8_t *s;
    int pending = 0;

    if (!buf)
        return td_fail(ctx, TD_ENOMEM, "out of memory cleaning a prompt");
    memcpy(buf, text, n + 1);
    unescape(buf);
    unescape(buf);
    /* collapse each whitespace run to one space, dropping leading and trailing */
    for (s = (const uint8_t *)buf, o = buf; *s;) {
        size_t sp = space_len(s);
        if (sp) {
            pending = o != buf;
            s += sp;
            continue;
        }
        if (pending)
            *o++ = ' ';
        pending = 0;
        *o++ = (char)*s++;
    }
    *o = '\0';
    *out = buf;
    return 0;
}
