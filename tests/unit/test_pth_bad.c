/*
 * Malformed and hostile PyTorch .pth files, built in memory (zip writer and
 * pickle bytes below): each must fail with the right error code and a
 * message naming the problem; nothing may crash, recurse deeply or run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "check.h"
#include "io/weights_internal.h"

typedef struct buf { uint8_t *d; size_t n, cap; } buf;

static void put(buf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->d = realloc(b->d, b->cap);
    }
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void put8(buf *b, unsigned v) { uint8_t c = (uint8_t)v; put(b, &c, 1); }
static void put16(buf *b, unsigned v) { put8(b, v & 255); put8(b, v >> 8 & 255); }
static void put32(buf *b, uint32_t v) { put16(b, v & 0xffff); put16(b, v >> 16); }
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

typedef struct zent { const char *name; const void *data; size_t len; } zent;

/* A stored-entries zip, like torch.save writes (minus the alignment). */
static buf make_zip(const zent *e, int n)
{
    buf z = { 0 }, cd = { 0 };
    for (int i = 0; i < n; i++) {
        uint32_t crc = (uint32_t)crc32(0, e[i].data, (uInt)e[i].len), off = (uint32_t)z.n;
        size_t nl = strlen(e[i].name);
        put32(&z, 0x04034b50); put16(&z, 20); put16(&z, 0); put16(&z, 0); put32(&z, 0);
        put32(&z, crc); put32(&z, (uint32_t)e[i].len); put32(&z, (uint32_t)e[i].len);
        put16(&z, (unsigned)nl); put16(&z, 0); put(&z, e[i].name, nl);
        put(&z, e[i].data, e[i].len);
        put32(&cd, 0x02014b50); put16(&cd, 20); put16(&cd, 20); put16(&cd, 0); put16(&cd, 0);
        put32(&cd, 0); put32(&cd, crc); put32(&cd, (uint32_t)e[i].len); put32(&cd, (uint32_t)e[i].len);
        put16(&cd, (unsigned)nl); put16(&cd, 0); put16(&cd, 0); put16(&cd, 0); put16(&cd, 0);
        put32(&cd, 0); put32(&cd, off); put(&cd, e[i].name, nl);
    }
    uint32_t cd_off = (uint32_t)z.n;
    put(&z, cd.d, cd.n);
    put32(&z, 0x06054b50); put16(&z, 0); put16(&z, 0); put16(&z, (unsigned)n); put16(&z, (unsigned)n);
    put32(&z, (uint32_t)cd.n); put32(&z, cd_off); put16(&z, 0);
    free(cd.d);
    return z;
}

/* The same as torch writes past 4 GB: every size and offset in the central
 * directory moved to a zip64 extra field, and a zip64 end record. */
static buf make_zip64(const zent *e, int n)
{
    buf z = { 0 }, cd = { 0 };
    for (int i = 0; i < n; i++) {
        uint32_t crc = (uint32_t)crc32(0, e[i].data, (uInt)e[i].len), off = (uint32_t)z.n;
        size_t nl = strlen(e[i].name);
        put32(&z, 0x04034b50); put16(&z, 45); put16(&z, 0); put16(&z, 0); put32(&z, 0);
        put32(&z, crc); put32(&z, (uint32_t)e[i].len); put32(&z, (uint32_t)e[i].len);
        put16(&z, (unsigned)nl); put16(&z, 0); put(&z, e[i].name, nl);
        put(&z, e[i].data, e[i].len);
        put32(&cd, 0x02014b50); put16(&cd, 45); put16(&cd, 45); put16(&cd, 0); put16(&cd, 0);
        put32(&cd, 0); put32(&cd, crc); put32(&cd, 0xffffffffu); put32(&cd, 0xffffffffu);
        put16(&cd, (unsigned)nl); put16(&cd, 4 + 24); put16(&cd, 0); put16(&cd, 0); put16(&cd, 0);
        put32(&cd, 0); put32(&cd, 0xffffffffu); put(&cd, e[i].name, nl);
        put16(&cd, 1); put16(&cd, 24);
        put32(&cd, (uint32_t)e[i].len); put32(&cd, 0);   /* size */
        put32(&cd, (uint32_t)e[i].len); put32(&cd, 0);   /* compressed size */
        put32(&cd, off); put32(&cd, 0);                  /* local header offset */
    }
    uint32_t cd_off = (uint32_t)z.n, e64 = 0;
    put(&z, cd.d, cd.n);
    e64 = (uint32_t)z.n;
    put32(&z, 0x06064b50); put32(&z, 44); put32(&z, 0); put32(&z, 45 << 16 | 45); put32(&z, 0);
    put32(&z, 0); put32(&z, (uint32_t)n); put32(&z, 0); put32(&z, (uint32_t)n); put32(&z, 0);
    put32(&z, (uint32_t)cd.n); put32(&z, 0); put32(&z, cd_off); put32(&z, 0);
    put32(&z, 0x07064b50); put32(&z, 0); put32(&z, e64); put32(&z, 0); put32(&z, 1);
    put32(&z, 0x06054b50); put16(&z, 0); put16(&z, 0); put16(&z, 0xffff); put16(&z, 0xffff);
    put32(&z, 0xffffffffu); put32(&z, 0xffffffffu); put16(&z, 0);
    free(cd.d);
    return z;
}

/* ---- pickle bytes ---- */
static void pstr(buf *b, const char *s) { put8(b, 'X'); put32(b, (uint32_t)strlen(s)); puts_(b, s); }
static void pglobal(buf *b, const char *mod, const char *name)
{
    put8(b, 'c'); puts_(b, mod); put8(b, '\n'); puts_(b, name); put8(b, '\n');
}
static void pint(buf *b, int64_t v)
{
    if (v >= 0 && v < 256) { put8(b, 'K'); put8(b, (unsigned)v); return; }
    put8(b, 0x8a); put8(b, 8);
    for (int i = 0; i < 8; i++) put8(b, (unsigned)((uint64_t)v >> (8 * i) & 255));
}
static void ptuple(buf *b, const int64_t *v, int n)
{
    put8(b, '(');
    for (int i = 0; i < n; i++) pint(b, v[i]);
    put8(b, 't');
}

typedef struct tspec {
    const char *storage_type;
    int64_t numel, offset;
    int64_t shape[2], stride[2];
} tspec;

/* {'w': _rebuild_tensor_v2(('storage', torch.<type>, '0', 'cpu', numel), offset,
 *  shape, stride, False, OrderedDict())} */
static buf tensor_pickle(const tspec *s)
{
    buf b = { 0 };
    put8(&b, 0x80); put8(&b, 2); put8(&b, '}'); put8(&b, '(');
    pstr(&b, "w");
    pglobal(&b, "torch._utils", "_rebuild_tensor_v2");
    put8(&b, '('); put8(&b, '(');
    pstr(&b, "storage"); pglobal(&b, "torch", s->storage_type); pstr(&b, "0"); pstr(&b, "cpu");
    pint(&b, s->numel); put8(&b, 't'); put8(&b, 'Q');
    pint(&b, s->offset); ptuple(&b, s->shape, 2); ptuple(&b, s->stride, 2);
    put8(&b, 0x89); pglobal(&b, "collections", "OrderedDict"); put8(&b, ')'); put8(&b, 'R');
    put8(&b, 't'); put8(&b, 'R'); put8(&b, 'u'); put8(&b, '.');
    return b;
}

static int open_mem(td_ctx *ctx, const buf *b, size_t n)
{
    td_weights *w = NULL;
    td_ctx_clear(ctx);
    int rc = td_weights_open_bytes(ctx, "bad.pth", b->d, n, TD_BYTES_NONE, &w);
    CHECK((rc == 0) == (w != NULL), "handle set iff success");
    if (w)
        CHECK(td_weights_count(w) >= 0, "count");
    td_weights_close(&w);
    return rc;
}

/* A checkpoint with this pickle and one storage record of rec_len bytes. */
static void expect_pickle(const char *what, const buf *pkl, size_t rec_len, int code,
                          const char *words)
{
    static uint8_t rec[4096];
    zent e[] = { { "archive/data.pkl", pkl->d, pkl->n }, { "archive/byteorder", "little", 6 },
                 { "archive/data/0", rec, rec_len } };
    buf z = make_zip(e, 3);
    td_ctx ctx;
    td_ctx_init(&ctx);
    for (size_t i = 0; i < sizeof(rec); i++)
        rec[i] = (uint8_t)(i * 37);
    int rc = open_mem(&ctx, &z, z.n);
    CHECK(rc == code && strstr(ctx.errmsg, words) && (!code || strstr(ctx.errmsg, "bad.pth")),
          "%s: rc %d (want %d), message '%s' (want '%s')", what, rc, code, ctx.errmsg, words);
    free(z.d);
}

static void expect_tensor(const char *what, tspec s, size_t rec_len, int code, const char *words)
{
    buf p = tensor_pickle(&s);
    expect_pickle(what, &p, rec_len, code, words);
    free(p.d);
}

static void expect_raw(const char *what, const char *bytes, size_t n, int code, const char *words)
{
    buf p = { 0 };
    put(&p, bytes, n);
    expect_pickle(what, &p, 16, code, words);
    free(p.d);
}

#define RAW(what, lit, code, words) expect_raw(what, lit, sizeof(lit) - 1, code, words)

static void check_tensors(void)
{
    tspec ok = { "FloatStorage", 4, 0, { 2, 2 }, { 2, 1 } };
    expect_tensor("valid", ok, 16, 0, "");
    tspec t = ok;
    t.stride[0] = 1; t.stride[1] = 2;
    expect_tensor("valid transposed", t, 16, 0, "");
    expect_tensor("short storage record", ok, 12, TD_EFORMAT,
                  "storage record data/0 holds 12 bytes but the pickle declares 16");
    t = ok; t.offset = 1;
    expect_tensor("offset past the record", t, 16, TD_EFORMAT, "reach past its 16-byte storage");
    t = ok; t.stride[0] = 100;
    expect_tensor("stride past the record", t, 16, TD_EFORMAT, "reach past");
    t = ok; t.stride[0] = INT64_MAX; t.shape[0] = 3;
    expect_tensor("stride extent overflows", t, 16, TD_EFORMAT, "reach past");
    t = ok; t.numel = INT64_MAX;
    expect_tensor("declared storage size overflows", t, 16, TD_EFORMAT, "storage size overflows");
    t = ok; t.shape[1] = -2;
    expect_tensor("negative dim", t, 16, TD_EFORMAT, "negative int");
    t = ok; t.storage_type = "ComplexFloatStorage";
    expect_tensor("unsupported storage type", t, 16, TD_EUNSUPPORTED,
                  "tensor type torch.ComplexFloatStorage is not supported");
    RAW("unsupported dtype", "\x80\x02" "ctorch\nfloat8_e5m2\n" ".", TD_EUNSUPPORTED,
        "tensor type torch.float8_e5m2 is not supported");
    RAW("torch.load itself", "\x80\x02" "ctorch\nload\n" ".", TD_EUNSAFE,
        "pickle global torch.load is not allowed");
}

static void check_globals(void)
{
    RAW("os.system", "\x80\x02}(X\x01\x00\x00\x00w" "cos\nsystem\n" "X\x02\x00\x00\x00ls\x85R" "u.",
        TD_EUNSAFE, "pickle global os.system is not allowed");
    RAW("builtins.eval", "\x80\x02" "cbuiltins\neval\n" "X\x01\x00\x00\x00" "1\x85R.",
        TD_EUNSAFE, "pickle global builtins.eval is not allowed");
    RAW("subprocess.Popen", "\x80\x02" "csubprocess\nPopen\n" ")R.",
        TD_EUNSAFE, "pickle global subprocess.Popen is not allowed");
    RAW("STACK_GLOBAL os.system", "\x80\x04\x8c\x02os\x8c\x06system\x93)R.",
        TD_EUNSAFE, "pickle global os.system is not allowed");
    RAW("REDUCE on a string", "\x80\x02}X\x01\x00\x00\x00wX\x01\x00\x00\x00" "f)Rs.",
        TD_EUNSAFE, "REDUCE on a str");
    RAW("REDUCE on a storage type", "\x80\x02" "ctorch\nFloatStorage\n" ")R.",
        TD_EUNSAFE, "REDUCE on a torch storage type");
    RAW("BUILD on a list", "\x80\x02]}b.", TD_EUNSAFE, "BUILD on a list");
}

static void check_structure(void)
{
    RAW("SETITEMS on a list", "\x80\x02](X\x01\x00\x00\x00kX\x01\x00\x00\x00vu.",
        TD_EFORMAT, "SETITEMS on a list");
    RAW("SETITEM on a tuple", "\x80\x02)X\x01\x00\x00\x00kX\x01\x00\x00\x00vs.",
        TD_EFORMAT, "SETITEM on a tuple");
    RAW("APPEND on a dict", "\x80\x02}Na.", TD_EFORMAT, "APPEND on a dict");
    RAW("no STOP", "\x80\x02}", TD_EFORMAT, "without STOP");
    RAW("truncated string", "\x80\x02X\xff\x00\x00\x00" "ab", TD_EFORMAT, "runs past the end");
    RAW("memo get unset", "\x80\x02h\x05.", TD_EFORMAT, "memo get of unset index 5");
    RAW("memo index absurd", "\x80\x02}r\xff\xff\xff\x7f.", TD_EFORMAT, "memo index");
    RAW("TUPLE without MARK", "\x80\x02t.", TD_EFORMAT, "needs a MARK");
    RAW("unsupported opcode", "\x80\x02(i__main__\nX\n.", TD_EUNSUPPORTED, "opcode 0x69");
    RAW("root not a dict", "\x80\x02]q\x00.", TD_EFORMAT, "expected a dict of tensors");
    RAW("empty dict is fine", "\x80\x02}.", 0, "");
    RAW("bad persistent id", "\x80\x02}(X\x01\x00\x00\x00wX\x01\x00\x00\x00xQu.", TD_EFORMAT,
        "persistent id");
}

/* 100,000 nested dicts: the machine must not recurse; the flattening walk
 * stops at its depth limit with a clear error. 100,000 open MARKs alone
 * are harmless. */
static void check_deep(void)
{
    enum { DEPTH = 100000 };
    buf p = { 0 };
    put8(&p, 0x80); put8(&p, 2);
    for (int i = 0; i < DEPTH; i++) {
        put8(&p, '}');
        pstr(&p, "k");
    }
    put8(&p, '}');
    for (int i = 0; i < DEPTH; i++)
        put8(&p, 's');
    put8(&p, '.');
    expect_pickle("100,000-deep dicts", &p, 16, TD_EFORMAT, "nested deeper than 64 levels");
    p.n = 0;
    put8(&p, 0x80); put8(&p, 2);
    for (int i = 0; i < DEPTH; i++)
        put8(&p, '(');
    put8(&p, '}'); put8(&p, '.');
    expect_pickle("100,000 MARKs", &p, 16, 0, "");
    p.n = 0;
    put8(&p, 0x80); put8(&p, 2); put8(&p, '}'); pstr(&p, "k");
    for (int i = 0; i < DEPTH; i++)
        put8(&p, ']');
    for (int i = 0; i < DEPTH - 1; i++)
        put8(&p, 'a');
    put8(&p, 's'); put8(&p, '.');
    expect_pickle("100,000-deep lists", &p, 16, TD_EFORMAT, "nested deeper than 64 levels");
    free(p.d);
}

static void check_zip(void)
{
    tspec ok = { "FloatStorage", 4, 0, { 2, 2 }, { 2, 1 } };
    buf pkl = tensor_pickle(&ok);
    uint8_t rec[16] = { 1 };
    zent e[] = { { "archive/data.pkl", pkl.d, pkl.n }, { "archive/data/0", rec, 16 } };
    buf z = make_zip(e, 2);
    td_ctx ctx;
    td_ctx_init(&ctx);

    CHECK(open_mem(&ctx, &z, z.n) == 0, "the valid archive opens: %s", ctx.errmsg);
    /* Truncated at several points. */
    size_t cuts[] = { 2, 30, z.n / 2, z.n - 23, z.n - 1 };
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        int rc = open_mem(&ctx, &z, cuts[i]);
        CHECK(rc == TD_EFORMAT && strstr(ctx.errmsg, "bad.pth") &&
              (strstr(ctx.errmsg, "end of central directory") || strstr(ctx.errmsg, "central directory") ||
               strstr(ctx.errmsg, "too short") || strstr(ctx.errmsg, "truncated")),
              "cut at %zu: rc %d '%s'", cuts[i], rc, ctx.errmsg);
    }
    /* Central directory offset pointing past its end record. */
    buf bad = { 0 };
    put(&bad, z.d, z.n);
    bad.d[bad.n - 6] = 0xff;
    CHECK(open_mem(&ctx, &bad, bad.n) == TD_EFORMAT && strstr(ctx.errmsg, "bad zip central directory"),
          "cd offset: %s", ctx.errmsg);
    /* A central directory entry with a broken signature. */
    bad.n = 0;
    put(&bad, z.d, z.n);
    size_t cd_off = (size_t)bad.d[bad.n - 6] | (size_t)bad.d[bad.n - 5] << 8;
    bad.d[cd_off] = 'X';
    CHECK(open_mem(&ctx, &bad, bad.n) == TD_EFORMAT && strstr(ctx.errmsg, "bad zip central directory"),
          "cd signature: %s", ctx.errmsg);
    /* More entries than the directory can hold. */
    bad.n = 0;
    put(&bad, z.d, z.n);
    bad.d[bad.n - 12] = 0xff;
    CHECK(open_mem(&ctx, &bad, bad.n) == TD_EFORMAT && strstr(ctx.errmsg, "entries cannot fit"),
          "entry count: %s", ctx.errmsg);
    /* A local header offset that points nowhere. */
    bad.n = 0;
    put(&bad, z.d, z.n);
    bad.d[cd_off + 42] = 0x7f;
    CHECK(open_mem(&ctx, &bad, bad.n) == TD_EFORMAT && strstr(ctx.errmsg, "no local header"),
          "local offset: %s", ctx.errmsg);
    /* A deflated entry claiming an impossible size. */
    bad.n = 0;
    put(&bad, z.d, z.n);
    bad.d[cd_off + 10] = 8;
    bad.d[cd_off + 27] = 0x7f;
    CHECK(open_mem(&ctx, &bad, bad.n) == TD_EFORMAT && strstr(ctx.errmsg, "claims"),
          "inflate ratio: %s", ctx.errmsg);
    free(bad.d);
    free(z.d);

    /* Zip64 records, and one whose zip64 extra field is cut short. */
    z = make_zip64(e, 2);
    td_weights *w = NULL;
    td_ctx_clear(&ctx);
    CHECK(td_weights_open_bytes(&ctx, "zip64.pth", z.d, z.n, TD_BYTES_NONE, &w) == 0 &&
          td_weights_count(w) == 1 && !memcmp(td_weights_tensor(w, 0)->data, rec, 16) &&
          (uintptr_t)td_weights_tensor(w, 0)->data % 4 == 0,
          "zip64: %s", ctx.errmsg);
    td_weights_close(&w);
    size_t cd64 = (size_t)z.d[z.n - 22 - 20 - 56 + 48] | (size_t)z.d[z.n - 22 - 20 - 56 + 49] << 8;
    z.d[cd64 + 30] = 12;   /* extra length: only one of the three 64-bit fields */
    CHECK(open_mem(&ctx, &z, z.n) == TD_EFORMAT && strstr(ctx.errmsg, "zip64 field"),
          "short zip64 extra: %s", ctx.errmsg);
    free(z.d);

    /* No data.pkl; a missing storage record; big-endian. */
    zent nopkl[] = { { "archive/other", rec, 4 } };
    z = make_zip(nopkl, 1);
    CHECK(open_mem(&ctx, &z, z.n) == TD_EFORMAT && strstr(ctx.errmsg, "no <archive>/data.pkl"),
          "%s", ctx.errmsg);
    free(z.d);
    zent norec[] = { { "archive/data.pkl", pkl.d, pkl.n } };
    z = make_zip(norec, 1);
    CHECK(open_mem(&ctx, &z, z.n) == TD_EFORMAT &&
          strstr(ctx.errmsg, "storage record 'archive/data/0' missing"), "%s", ctx.errmsg);
    free(z.d);
    zent big[] = { { "archive/data.pkl", pkl.d, pkl.n }, { "archive/byteorder", "big", 3 },
                   { "archive/data/0", rec, 16 } };
    z = make_zip(big, 3);
    CHECK(open_mem(&ctx, &z, z.n) == TD_EUNSUPPORTED && strstr(ctx.errmsg, "big-endian"),
          "%s", ctx.errmsg);
    free(z.d);
    free(pkl.d);
}

static void check_legacy(void)
{
    td_ctx ctx;
    td_weights *w;
    td_ctx_init(&ctx);
    int rc = td_weights_open(&ctx, TD_ROOT "/tests/data/weights/legacy.pth", &w);
    CHECK(rc == TD_EUNSUPPORTED && strstr(ctx.errmsg, "legacy PyTorch format") &&
          strstr(ctx.errmsg, "_use_new_zipfile_serialization=False") && strstr(ctx.errmsg, "legacy.pth"),
          "legacy: rc %d '%s'", rc, ctx.errmsg);
    td_ctx_clear(&ctx);
    rc = td_weights_open(&ctx, TD_ROOT "/tests/data/weights/no-such-file.pth", &w);
    CHECK(rc == TD_EIO && strstr(ctx.errmsg, "no-such-file.pth"), "missing file: %s", ctx.errmsg);
}

int main(void)
{
    check_tensors();
    check_globals();
    check_structure();
    check_deep();
    check_zip();
    check_legacy();
    return check_summary();
}
