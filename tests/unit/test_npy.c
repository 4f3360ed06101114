/*
 * .npy round trips for every dtype numpy and we share, files written by hand
 * in each format version, and the refusals (Fortran order, big-endian,
 * unknown dtype, truncation).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "io/npy.h"

static char tmpdir[256];

static void path_of(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

static void write_file(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(d, 1, n, f) == n, "write %s", path);
    if (f)
        fclose(f);
}

/* A .npy with the given version and header dict, then data. */
static void write_npy(const char *path, int version, const char *dict, const void *data, size_t n)
{
    uint8_t hdr[256];
    size_t pre = version == 1 ? 10 : 12, dl = strlen(dict);
    size_t total = (pre + dl + 1 + 63) / 64 * 64, hl = total - pre;
    memcpy(hdr, "\x93NUMPY", 6);
    hdr[6] = (uint8_t)version;
    hdr[7] = 0;
    hdr[8] = (uint8_t)hl;
    hdr[9] = (uint8_t)(hl >> 8);
    if (version > 1)
        hdr[10] = hdr[11] = 0;
    memcpy(hdr + pre, dict, dl);
    memset(hdr + pre + dl, ' ', hl - dl - 1);
    hdr[total - 1] = '\n';
    uint8_t *all = malloc(total + n);
    memcpy(all, hdr, total);
    memcpy(all + total, data, n);
    write_file(path, all, total + n);
    free(all);
}

static void check_roundtrip(test_rng *r)
{
    static const td_dtype types[] = { TD_F32, TD_I64, TD_I32, TD_I8, TD_U8, TD_BOOL };
    td_ctx ctx;
    char path[300];
    td_ctx_init(&ctx);
    for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
        td_tensor t, back;
        int64_t shape[3] = { 2, 3, 1 + (int64_t)(test_next(r) % 5) };
        CHECK(td_tensor_new(&ctx, &t, types[k], 3, shape) == 0, "alloc");
        uint8_t *b = t.data;
        for (size_t i = 0; i < td_nbytes(&t); i++)
            b[i] = (uint8_t)test_next(r);
        if (types[k] == TD_BOOL)
            for (size_t i = 0; i < td_nbytes(&t); i++)
                b[i] &= 1;
        if (types[k] == TD_F32)
            test_fill(r, t.data, (size_t)td_numel(&t), 3.0f);
        path_of(path, sizeof(path), "rt.npy");
        CHECK(td_npy_write(&ctx, path, &t) == 0, "write %s: %s", td_dtype_name(types[k]), ctx.errmsg);
        CHECK(td_npy_read(&ctx, path, &back) == 0, "read %s: %s", td_dtype_name(types[k]), ctx.errmsg);
        CHECK(back.dtype == t.dtype && back.ndim == 3 && !memcmp(back.shape, t.shape, sizeof(shape)) &&
              !memcmp(back.data, t.data, td_nbytes(&t)), "%s round trip", td_dtype_name(types[k]));
        td_tensor_free(&back);
        /* A transposed view is written in C order of the view. */
        if (types[k] == TD_F32) {
            td_tensor v;
            CHECK(td_tensor_permute(&ctx, &t, (int[]){ 2, 0, 1 }, &v) == 0, "permute");
            CHECK(td_npy_write(&ctx, path, &v) == 0 && td_npy_read(&ctx, path, &back) == 0, "view");
            const float *src = t.data, *got = back.data;
            int ok = back.shape[0] == shape[2];
            for (int64_t c = 0; ok && c < shape[2]; c++)
                for (int64_t i = 0; i < 6; i++)
                    ok = got[c * 6 + i] == src[i * shape[2] + c];
            CHECK(ok, "permuted view written in its own C order");
            td_tensor_free(&back);
        }
        td_tensor_free(&t);
    }
    /* 0-d and 1-d shapes as numpy spells them: () and (n,). */
    float one = 2.5f;
    td_tensor s = td_view(&one, TD_F32, 0, (int64_t[]){ 1 }), back;
    path_of(path, sizeof(path), "scalar.npy");
    CHECK(td_npy_write(&ctx, path, &s) == 0 && td_npy_read(&ctx, path, &back) == 0 &&
          back.ndim == 0 && *(float *)back.data == 2.5f, "0-d: %s", ctx.errmsg);
    td_tensor_free(&back);
    uint16_t bf[2] = { 0x3f80, 0x4000 };
    td_tensor b16 = td_view1(bf, TD_BF16, 2);
    CHECK(td_npy_write(&ctx, path, &b16) == TD_EUNSUPPORTED && strstr(ctx.errmsg, "bf16"),
          "bf16 has no numpy dtype: %s", ctx.errmsg);
}

static void check_versions_and_widening(test_rng *r)
{
    td_ctx ctx;
    char path[300];
    double d[5];
    uint16_t h[5];
    td_tensor t;
    td_ctx_init(&ctx);
    for (int i = 0; i < 5; i++) {
        d[i] = test_uniform(r) * 10;
        h[i] = td_f32_to_f16((float)d[i]);
    }
    path_of(path, sizeof(path), "v.npy");
    for (int v = 1; v <= 3; v++) {
        write_npy(path, v, "{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }", d, sizeof(d));
        CHECK(td_npy_read(&ctx, path, &t) == 0 && t.dtype == TD_F32 && t.shape[0] == 5 &&
              ((float *)t.data)[3] == (float)d[3], "v%d f8 widened: %s", v, ctx.errmsg);
        td_tensor_free(&t);
    }
    write_npy(path, 1, "{'descr': '<f2', 'fortran_order': False, 'shape': (1, 5), }", h, sizeof(h));
    CHECK(td_npy_read(&ctx, path, &t) == 0 && t.dtype == TD_F32 && t.ndim == 2 &&
          ((float *)t.data)[4] == td_f16_to_f32(h[4]), "f2 widened: %s", ctx.errmsg);
    td_tensor_free(&t);

    static const struct { const char *dict; size_t n; int code; const char *words; } bad[] = {
        { "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, TD_EUNSUPPORTED, "Fortran" },
        { "{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", 16, TD_EUNSUPPORTED, "big-endian" },
        { "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16, TD_EUNSUPPORTED, "'<c8'" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", 16, TD_EFORMAT, "truncated" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 16, TD_EFORMAT, "16 bytes" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }", 16, TD_EFORMAT, "bad .npy shape" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 16,
          TD_EFORMAT, "overflows" },
        { "{'descr': '<f4', 'shape': (4,), }", 16, TD_EFORMAT, "lacks" },
    };
    uint8_t zeros[16] = { 0 };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        td_ctx_clear(&ctx);
        write_npy(path, 1, bad[i].dict, zeros, bad[i].n);
        int rc = td_npy_read(&ctx, path, &t);
        CHECK(rc == bad[i].code && strstr(ctx.errmsg, bad[i].words) && strstr(ctx.errmsg, "v.npy"),
              "case %zu: rc %d '%s'", i, rc, ctx.errmsg);
    }
    td_ctx_clear(&ctx);
    write_file(path, "\x93NUMPY\x01\x00\xff\x00{", 11);
    CHECK(td_npy_read(&ctx, path, &t) == TD_EFORMAT && strstr(ctx.errmsg, "past the end"), "%s", ctx.errmsg);
    td_ctx_clear(&ctx);
    write_file(path, "PK\x03\x04 not npy", 13);
    CHECK(td_npy_read(&ctx, path, &t) == TD_EFORMAT && strstr(ctx.errmsg, "not a .npy"), "%s", ctx.errmsg);
}

int main(void)
{
    test_rng r = test_rng_seeded();
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/td_test_npy_XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL, "mkdtemp");
    check_roundtrip(&r);
    check_versions_and_widening(&r);
    char p[300];
    const char *names[] = { "rt.npy", "scalar.npy", "v.npy" };
    for (int i = 0; i < 3; i++) {
        path_of(p, sizeof(p), names[i]);
        unlink(p);
    }
    rmdir(tmpdir);
    return check_summary();
}
