/* Tokenizer: the committed SentencePiece fixture (ids from sentencepiece
 * itself, tests/parity/gen_tokenizer_fixture.py), truncation, damaged
 * models, and Wan's prompt cleaning. */
#include <string.h>

#include "check.h"
#include "text/prompt_clean.h"
#include "text/tokenizer.h"

#define DIR TD_ROOT "/tests/data/text/"

static void unescape(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (*s == '\\' && (s[1] == 'n' || s[1] == 't' || s[1] == '\\')) {
            s++;
            *o++ = *s == 'n' ? '\n' : *s == 't' ? '\t' : '\\';
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

/* tokenizers applies the charsmap per grapheme, so a combining mark
 * (U+0300..U+036F) after a mapped character normalizes otherwise than in
 * sentencepiece (whose result we give); tokenizer.json ids skip those. */
static int has_combining_mark(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((p[0] == 0xcc && p[1] >= 0x80 && p[1] <= 0xbf) ||
            (p[0] == 0xcd && p[1] >= 0x80 && p[1] <= 0xaf))
            return 1;
    return 0;
}

/* model: spiece.model or tokenizer.json; ids_file: the ids its reference
 * library gives strings.txt */
static void test_fixture(const char *model, const char *ids_file, int skip_marks)
{
    td_ctx ctx;
    td_tokenizer *tok = NULL;
    FILE *fs = fopen(DIR "strings.txt", "r"), *fi = fopen(ids_file, "r");
    char *line = NULL, *want = NULL;
    size_t cap = 0, wcap = 0;
    int lines = 0, bad = 0, skipped = 0;

    td_ctx_init(&ctx);
    CHECK(fs && fi, "fixture files");
    CHECK(td_tokenizer_load(&ctx, model, &tok) == 0, "%s", ctx.errmsg);
    if (!fs || !fi || !tok)
        return;
    CHECK(td_tokenizer_vocab_size(tok) == 1500, "vocab %d", td_tokenizer_vocab_size(tok));
    while (getline(&line, &cap, fs) > 0 && getline(&want, &wcap, fi) > 0) {
        int32_t ids[512];
        int n = 0;
        char got[8192] = "", *p = got;
        line[strcspn(line, "\n")] = '\0';
        want[strcspn(want, "\n")] = '\0';
        unescape(line);
        if (skip_marks && has_combining_mark(line)) {
            skipped++;
            lines++;
            continue;
        }
        if (td_tokenizer_encode(&ctx, tok, line, 512, ids, &n) < 0) {
            bad++;
            continue;
        }
        for (int i = 0; i < n && p < got + sizeof(got) - 16; i++)
            p += sprintf(p, "%s%d", i ? " " : "", ids[i]);
        if (strcmp(got, want)) {
            if (!bad)
                fprintf(stderr, "line %d: got %.80s\n        want %.80s\n", lines + 1, got, want);
            bad++;
        }
        lines++;
    }
    CHECK(lines == 309 && bad == 0 && skipped < 150, "%s: %d of %d strings differ from %s "
          "(%d skipped)", model, bad, lines - skipped, ids_file, skipped);

    /* truncation keeps </s> last */
    int32_t ids[8];
    int n = 0;
    CHECK(td_tokenizer_encode(&ctx, tok, "hello world this is a long prompt with many pieces", 5, ids, &n) == 0 &&
          n == 5 && ids[4] == 1, "5 ids with </s> last: n %d last %d", n, n ? ids[n - 1] : -1);
    CHECK(td_tokenizer_encode(&ctx, tok, "", 512, ids, &n) == 0 && n == 1 && ids[0] == 1,
          "empty text is </s> alone");
    free(line);
    free(want);
    fclose(fs);
    fclose(fi);
    td_tokenizer_free(&tok);
    CHECK(tok == NULL, "free clears the handle");
}

static void expect_bad(const char *what, const uint8_t *data, size_t n, int code, const char *msg)
{
    td_ctx ctx;
    td_tokenizer *tok = NULL;
    td_ctx_init(&ctx);
    int rc = td_tokenizer_load_bytes(&ctx, what, data, n, &tok);
    CHECK(rc == code && tok == NULL && strstr(ctx.errmsg, msg), "%s: rc %d, message '%s'", what, rc,
          ctx.errmsg);
}

static void test_damaged(test_rng *r)
{
    FILE *f = fopen(DIR "spiece.model", "rb");
    static uint8_t buf[300000], noise[4096];
    size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
    if (f)
        fclose(f);
    CHECK(n > 1000, "read the fixture model");
    for (int cut = 1; cut < 6; cut++)
        expect_bad("cut.model", buf, n * (size_t)cut / 7, TD_EFORMAT, "damaged");
    for (size_t i = 0; i < sizeof(noise); i++)
        noise[i] = (uint8_t)test_next(r);
    {
        td_ctx ctx;
        td_tokenizer *tok = NULL;
        td_ctx_init(&ctx);
        CHECK(td_tokenizer_load_bytes(&ctx, "noise", noise, sizeof(noise), &tok) < 0 && !tok,
              "random bytes are refused");
    }
    expect_bad("empty.model", buf, 0, TD_EFORMAT, "no pieces");
    /* one piece 'a' and trainer_spec.model_type = 2 (BPE) */
    static const uint8_t bpe[] = { 0x0a, 0x03, 0x0a, 0x01, 'a', 0x12, 0x02, 0x18, 0x02 };
    expect_bad("bpe.model", bpe, sizeof(bpe), TD_EUNSUPPORTED, "not unigram");
    /* a length running past the end */
    static const uint8_t over[] = { 0x0a, 0x7f, 0x0a, 0x01, 'a' };
    expect_bad("overrun.model", over, sizeof(over), TD_EFORMAT, "damaged");
}

static void expect_bad_json(const char *json, int code, const char *msg)
{
    td_ctx ctx;
    td_tokenizer *tok = NULL;
    td_ctx_init(&ctx);
    int rc = td_tokenizer_load_json(&ctx, "t.json", json, strlen(json), &tok);
    CHECK(rc == code && tok == NULL && strstr(ctx.errmsg, msg), "%s: rc %d, message '%s'", json,
          rc, ctx.errmsg);
}

static void test_json_refused(void)
{
#define UNIGRAM "\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0],[\"a\",-1]]}"
#define META "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"always\"}"
    expect_bad_json("{\"model\": ", TD_EFORMAT, "bad JSON");
    expect_bad_json("{\"model\":{\"type\":\"BPE\"}}", TD_EUNSUPPORTED, "model type BPE");
    expect_bad_json("{" UNIGRAM "," META ",\"normalizer\":{\"type\":\"NFKC\"}}",
                    TD_EUNSUPPORTED, "normalizer type NFKC");
    expect_bad_json("{" UNIGRAM "," META ",\"normalizer\":{\"type\":\"Precompiled\","
                    "\"precompiled_charsmap\":\"%%%\"}}", TD_EFORMAT, "not base64");
    expect_bad_json("{" UNIGRAM ",\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
                    TD_EUNSUPPORTED, "pre_tokenizer type ByteLevel");
    expect_bad_json("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"a\"]]},"
                    META "}", TD_EFORMAT, "vocab entry 0");
    expect_bad_json("{\"model\":{\"type\":\"Unigram\",\"unk_id\":5,\"vocab\":[[\"a\",0]]},"
                    META "}", TD_EFORMAT, "unk_id");
#undef UNIGRAM
#undef META
}

static void test_clean(void)
{
    static const char *const cases[][2] = {
        { "  a&amp;amp;b \t\n c  ", "a&b c" },           /* unescaped twice, like Wan */
        { "&#x41;&#66;&lt;x&gt; &quot;q&quot;", "AB<x> \"q\"" },
        { "x\xe3\x80\x80\xe3\x80\x80y\xc2\xa0z", "x y z" },  /* U+3000, U+00A0 are spaces */
        { "&nosuch; &#;", "&nosuch; &#;" },
        { "", "" },
    };
    td_ctx ctx;
    td_ctx_init(&ctx);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL;
        CHECK(td_prompt_clean(&ctx, cases[i][0], &out) == 0 && !strcmp(out, cases[i][1]),
              "clean '%s' -> '%s', want '%s'", cases[i][0], out ? out : "(null)", cases[i][1]);
        free(out);
    }
}

int main(void)
{
    test_rng r = test_rng_seeded();
    test_fixture(DIR "spiece.model", DIR "ids.txt", 0);
    test_fixture(DIR "tokenizer.json", DIR "ids_json.txt", 1);
    test_json_refused();
    test_damaged(&r);
    test_clean();
    return check_summary();
}
