/*
 * Malformed safetensors files, built in memory: each must fail with the
 * right error code and a message that names the problem.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "io/weights_internal.h"

/* 8-byte length + header + data_len bytes of data (random). */
static uint8_t *make_st(test_rng *r, const char *header, size_t data_len, size_t *size)
{
    size_t h = strlen(header);
    uint8_t *b = malloc(8 + h + data_len + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++)
        b[8 + h + i] = (uint8_t)test_next(r);
    *size = 8 + h + data_len;
    return b;
}

static int open_mem(td_ctx *ctx, const uint8_t *b, size_t n)
{
    td_weights *w = NULL;
    td_ctx_clear(ctx);
    int rc = td_weights_open_bytes(ctx, "bad.safetensors", b, n, TD_BYTES_NONE, &w);
    CHECK((rc == 0) == (w != NULL), "handle set iff success");
    td_weights_close(&w);
    return rc;
}

static void expect(test_rng *r, const char *what, const char *header, size_t data_len,
                   int code, const char *words)
{
    td_ctx ctx;
    size_t n;
    uint8_t *b = make_st(r, header, data_len, &n);
    td_ctx_init(&ctx);
    int rc = open_mem(&ctx, b, n);
    CHECK(rc == code && strstr(ctx.errmsg, words) && (!code || strstr(ctx.errmsg, "bad.safetensors")),
          "%s: rc %d (want %d), message '%s' (want '%s')", what, rc, code, ctx.errmsg, words);
    free(b);
}

#define T(name, dt, shape, b, e) "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape \
    ",\"data_offsets\":[" #b "," #e "]}"

static void check_truncation(test_rng *r)
{
    const char *hdr = "{" T("a", "F32", "[2,3]", 0, 24) "," T("b", "BF16", "[4]", 24, 32) "}";
    size_t n, h = strlen(hdr);
    uint8_t *b = make_st(r, hdr, 32, &n);
    td_ctx ctx;
    td_ctx_init(&ctx);
    CHECK(open_mem(&ctx, b, n) == 0, "the untruncated file opens: %s", ctx.errmsg);
    const struct { size_t cut; const char *words; } cuts[] = {
        { 0, "too short" }, { 5, "too short" }, { 8, "past the end of the file" },
        { 8 + h / 2, "past the end of the file" }, { 8 + h - 1, "past the end of the file" },
        { 8 + h, "past the end of the data section" }, { 8 + h + 20, "past the end" },
        { n - 1, "past the end of the data section" },
    };
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        int rc = open_mem(&ctx, b, cuts[i].cut);
        CHECK(rc == TD_EFORMAT && strstr(ctx.errmsg, cuts[i].words),
              "cut at %zu: rc %d '%s'", cuts[i].cut, rc, ctx.errmsg);
    }
    free(b);
}

int main(void)
{
    test_rng r = test_rng_seeded();

    check_truncation(&r);
    expect(&r, "valid with metadata", "{\"__metadata__\":{\"k\":\"v\"}," T("a", "I8", "[3]", 0, 3) "}",
           3, 0, "");
    expect(&r, "bad JSON", "{\"a\": {\"dtype\": ", 0, TD_EFORMAT, "bad safetensors header JSON");
    expect(&r, "trailing garbage", "{} x", 0, TD_EFORMAT, "bad safetensors header JSON");
    expect(&r, "not an object", "[1,2]  ", 0, TD_EFORMAT, "not a JSON object");
    expect(&r, "entry not an object", "{\"a\": 3}", 0, TD_EFORMAT, "'a': header entry is not an object");
    expect(&r, "duplicate key", "{" T("a", "U8", "[1]", 0, 1) "," T("a", "U8", "[1]", 1, 2) "}", 2,
           TD_EFORMAT, "duplicate");
    expect(&r, "overlap", "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 4, 12) "}", 12,
           TD_EFORMAT, "'b' at offset 4 overlaps");
    expect(&r, "gap", "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 12, 20) "}", 20,
           TD_EFORMAT, "gap of 4 bytes before tensor 'b'");
    expect(&r, "gap at start", "{" T("a", "F32", "[2]", 4, 12) "}", 12, TD_EFORMAT, "gap of 4 bytes");
    expect(&r, "out of file", "{" T("a", "F32", "[4]", 0, 16) "}", 8, TD_EFORMAT,
           "'a' ends at 16, past the end of the data section (8 bytes)");
    expect(&r, "uncovered data", "{" T("a", "F32", "[2]", 0, 8) "}", 12, TD_EFORMAT,
           "cover 8 bytes of a 12-byte data section");
    expect(&r, "span != size", "{" T("a", "F32", "[3]", 0, 8) "}", 8, TD_EFORMAT,
           "span 8 bytes, dtype and shape need 12");
    expect(&r, "end before begin", "{" T("a", "F32", "[0]", 8, 0) "}", 8, TD_EFORMAT, "before begin");
    expect(&r, "negative offset", "{" T("a", "F32", "[0]", -8, 0) "}", 0, TD_EFORMAT, "data_offsets");
    expect(&r, "missing offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, TD_EFORMAT,
           "data_offsets");
    expect(&r, "negative dim", "{" T("a", "F32", "[2,-1]", 0, 0) "}", 0, TD_EFORMAT,
           "dim 1 is not a non-negative integer");
    expect(&r, "fractional dim", "{" T("a", "F32", "[2.5]", 0, 0) "}", 0, TD_EFORMAT,
           "dim 0 is not a non-negative integer");
    expect(&r, "absurd dim", "{" T("a", "F32", "[4611686018427387904]", 0, 0) "}", 0, TD_EFORMAT,
           "'a': byte size of its shape overflows");
    expect(&r, "dims product overflow", "{" T("a", "U8", "[4294967296,4294967296]", 0, 0) "}", 0,
           TD_EFORMAT, "overflows");
    expect(&r, "too many dims", "{" T("a", "U8", "[1,1,1,1,1,1,1,1,1]", 0, 1) "}", 1,
           TD_EUNSUPPORTED, "9 dims");
    expect(&r, "unknown dtype", "{" T("a", "Q4_K", "[1]", 0, 1) "}", 1, TD_EUNSUPPORTED,
           "unknown dtype 'Q4_K'");
    expect(&r, "dtype not a string", "{\"a\":{\"dtype\":7,\"shape\":[],\"data_offsets\":[0,4]}}", 4,
           TD_EFORMAT, "dtype missing or not a string");
    expect(&r, "shape not an array", "{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}",
           4, TD_EFORMAT, "shape missing or not an array");
    expect(&r, "metadata not strings", "{\"__metadata__\":{\"k\":1}}", 0, TD_EFORMAT,
           "__metadata__ value for 'k' is not a string");
    expect(&r, "metadata not an object", "{\"__metadata__\":[]}", 0, TD_EFORMAT,
           "__metadata__ is not an object");
    expect(&r, "header of the wrong type", "\"a string\"", 0, TD_EFORMAT, "bad safetensors header JSON");

    /* A writer that pads nothing: the F32 tensor sits at an odd address in
     * the file; the store hands out an aligned copy with the same bytes. */
    td_ctx ctx;
    td_ctx_init(&ctx);
    {
        size_t n;
        uint8_t *b = make_st(&r, "{" T("u", "U8", "[3]", 0, 3) "," T("f", "F32", "[2]", 3, 11) "}",
                             11, &n);
        td_weights *w = NULL;
        CHECK((uintptr_t)(b + n - 8) % 4 != 0, "the test tensor is misaligned in the file");
        CHECK(td_weights_open_bytes(&ctx, "odd.safetensors", b, n, TD_BYTES_NONE, &w) == 0, "%s",
              ctx.errmsg);
        const td_tensor *f = w ? td_weights_find(w, "f") : NULL;
        CHECK(f && (uintptr_t)f->data % 4 == 0 && !memcmp(f->data, b + n - 8, 8),
              "misaligned tensor copied aligned");
        td_weights_close(&w);
        free(b);
    }

    /* Header lengths past the file and past the 100 MB limit. */
    uint8_t b[16] = { 0xe8, 0x03, 0, 0, 0, 0, 0, 0, '{', '}' };
    CHECK(open_mem(&ctx, b, 10) == TD_EFORMAT && strstr(ctx.errmsg, "header length 1000 past the end"),
          "%s", ctx.errmsg);
    b[0] = 0; b[1] = 0xc2; b[2] = 0xeb; b[3] = 0x0b;   /* 200,000,000 */
    CHECK(open_mem(&ctx, b, 10) == TD_EFORMAT && strstr(ctx.errmsg, "100 MB"), "%s", ctx.errmsg);
    memcpy(b, "hello, weights!!", 16);
    CHECK(open_mem(&ctx, b, 16) == TD_EFORMAT && strstr(ctx.errmsg, "unrecognised"), "%s", ctx.errmsg);
    return check_summary();
}
