/* The PNG codec: files built here byte by byte (every filter type, colour
 * type and depth the reader takes, with a forward filter written in this
 * test) decode to the pixels they were made from; our writer round-trips;
 * each kind of damage is refused with a message naming it. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "check.h"
#include "io/png.h"

typedef struct buf {
    uint8_t *d;
    size_t n;
} buf;

static void put(buf *b, const void *p, size_t n)
{
    b->d = realloc(b->d, b->n + n);
    memcpy(b->d + b->n, p, n);
    b->n += n;
}

static void put32(buf *b, uint32_t v)
{
    uint8_t p[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
    put(b, p, 4);
}

static void chunk(buf *b, const char *type, const uint8_t *d, uint32_t n)
{
    uLong c = crc32(crc32(0, NULL, 0), (const Bytef *)type, 4);
    put32(b, n);
    put(b, type, 4);
    if (n)
        put(b, d, n);
    put32(b, (uint32_t)(n ? crc32(c, d, n) : c));
}

static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* A whole PNG of packed rows (h x rb bytes), each row filtered with type
 * (y % 5) so all five filters are crossed. */
static buf make_png(int w, int h, int depth, int color, const uint8_t *rows, int rb,
                    const uint8_t *plte, int plte_n, int interlace)
{
    static const uint8_t sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    static const int ch[7] = { 1, 0, 3, 1, 2, 0, 4 };
    int bpp = (ch[color] * depth + 7) / 8;
    uint8_t ihdr[13] = { 0 }, *raw = malloc((size_t)h * (rb + 1));
    uLongf zn = compressBound((uLong)h * (rb + 1));
    uint8_t *z = malloc(zn);
    buf b = { 0 };

    for (int y = 0; y < h; y++) {
        const uint8_t *cur = rows + y * rb, *prev = y ? rows + (y - 1) * rb : NULL;
        uint8_t *o = raw + y * (rb + 1);
        o[0] = (uint8_t)(y % 5);
        for (int i = 0; i < rb; i++) {
            int a = i >= bpp ? cur[i - bpp] : 0, up = prev ? prev[i] : 0;
            int c = prev && i >= bpp ? prev[i - bpp] : 0;
            int pred[5] = { 0, a, up, (a + up) / 2, paeth(a, up, c) };
            o[1 + i] = (uint8_t)(cur[i] - pred[y % 5]);
        }
    }
    compress2(z, &zn, raw, (uLong)h * (rb + 1), 9);
    ihdr[0] = (uint8_t)(w >> 24), ihdr[1] = (uint8_t)(w >> 16), ihdr[2] = (uint8_t)(w >> 8), ihdr[3] = (uint8_t)w;
    ihdr[4] = (uint8_t)(h >> 24), ihdr[5] = (uint8_t)(h >> 16), ihdr[6] = (uint8_t)(h >> 8), ihdr[7] = (uint8_t)h;
    ihdr[8] = (uint8_t)depth, ihdr[9] = (uint8_t)color, ihdr[12] = (uint8_t)interlace;
    put(&b, sig, 8);
    chunk(&b, "IHDR", ihdr, 13);
    if (plte)
        chunk(&b, "PLTE", plte, (uint32_t)plte_n * 3);
    /* the image data split over two IDAT chunks, as encoders may */
    chunk(&b, "IDAT", z, (uint32_t)(zn / 2));
    chunk(&b, "IDAT", z + zn / 2, (uint32_t)(zn - zn / 2));
    chunk(&b, "IEND", NULL, 0);
    free(raw);
    free(z);
    return b;
}

/* Random samples in the layout of (depth, color); expected RGB alongside. */
static void check_kind(test_rng *r, int depth, int color)
{
    static const int ch[7] = { 1, 0, 3, 1, 2, 0, 4 };
    int w = 1 + (int)(test_next(r) % 23), h = 1 + (int)(test_next(r) % 11), n = ch[color];
    int rb = (w * n * depth + 7) / 8, plte_n = color == 3 ? 1 << (depth < 8 ? depth : 6) : 0;
    uint8_t *rows = calloc((size_t)h, (size_t)rb), *want = malloc((size_t)w * h * 3), *got = NULL;
    uint8_t plte[768];
    int gw = 0, gh = 0, rc, maxv = (1 << (depth > 8 ? 8 : depth)) - 1;
    td_ctx ctx;

    for (int i = 0; i < plte_n * 3; i++)
        plte[i] = (uint8_t)(test_next(r) >> 56);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < n; c++) {
                int v = (int)(test_next(r) % (uint64_t)(color == 3 ? plte_n : maxv + 1));
                int64_t s = (int64_t)x * n + c;
                uint8_t *row = rows + y * rb;
                if (depth == 16) {
                    row[2 * s] = (uint8_t)v;
                    row[2 * s + 1] = (uint8_t)(test_next(r) >> 56);
                } else if (depth == 8) {
                    row[s] = (uint8_t)v;
                } else {
                    row[s * depth / 8] |= (uint8_t)(v << (8 - depth - s * depth % 8));
                }
                if (c >= 3 || (n == 2 && c == 1))
                    continue;                       /* alpha is dropped */
                uint8_t *o = want + ((size_t)y * w + x) * 3;
                if (color == 3)
                    memcpy(o, plte + 3 * v, 3);
                else if (n >= 3)
                    o[c] = (uint8_t)(v * 255 / maxv);
                else
                    o[0] = o[1] = o[2] = (uint8_t)(v * 255 / maxv);
            }
    buf png = make_png(w, h, depth, color, rows, rb, color == 3 ? plte : NULL, plte_n, 0);
    td_ctx_init(&ctx);
    rc = td_png_decode(&ctx, "test.png", png.d, png.n, &got, &gw, &gh);
    CHECK(rc == 0 && gw == w && gh == h && !memcmp(got, want, (size_t)w * h * 3),
          "colour type %d depth %d %dx%d decodes to its pixels (%s)", color, depth, w, h,
          rc ? ctx.errmsg : "ok");
    free(got);
    free(png.d);
    free(rows);
    free(want);
}

static void expect_error(const char *what, buf png, const char *needle)
{
    td_ctx ctx;
    uint8_t *rgb = NULL;
    int w, h, rc;
    td_ctx_init(&ctx);
    rc = td_png_decode(&ctx, "bad.png", png.d, png.n, &rgb, &w, &h);
    CHECK(rc < 0 && !rgb && strstr(ctx.errmsg, needle) && strstr(ctx.errmsg, "bad.png"),
          "%s: refused naming it (got %d: '%s')", what, rc, ctx.errmsg);
    free(png.d);
}

static buf rgb_png(test_rng *r, int w, int h)
{
    uint8_t *rows = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++)
        rows[i] = (uint8_t)(test_next(r) >> 56);
    buf b = make_png(w, h, 8, 2, rows, w * 3, NULL, 0, 0);
    free(rows);
    return b;
}

static void check_errors(test_rng *r)
{
    buf b;
    b = rgb_png(r, 5, 4);
    b.d[0] = 'G';
    expect_error("bad signature", b, "signature");
    b = rgb_png(r, 5, 4);
    b.n -= 20;
    expect_error("truncated file", b, "past the end");
    b = rgb_png(r, 5, 4);
    b.d[20] ^= 1;                             /* inside IHDR: its CRC no longer fits */
    expect_error("corrupt header", b, "bad CRC");
    {
        uint8_t rows[4 * 6] = { 0 };
        expect_error("interlaced", make_png(2, 4, 8, 2, rows, 6, NULL, 0, 1), "interlaced");
        expect_error("palette without PLTE", make_png(2, 4, 8, 3, rows, 2, NULL, 0, 0), "PLTE");
        uint8_t plte[6] = { 1, 2, 3, 4, 5, 6 }, idx[8] = { 0, 1, 2, 0, 0, 0, 0, 0 };
        expect_error("palette index past the palette", make_png(2, 4, 8, 3, idx, 2, plte, 2, 0),
                     "palette entry 2");
        expect_error("16-bit palette", make_png(2, 4, 16, 3, rows, 4, plte, 2, 0), "bit depth 16");
    }
    {
        /* IHDR claiming more rows than the data holds */
        uint8_t rows[3 * 6] = { 0 };
        b = make_png(2, 3, 8, 2, rows, 6, NULL, 0, 0);
        b.d[16 + 7] = 9;                      /* height 3 -> 9 */
        uLong c = crc32(crc32(0, NULL, 0), b.d + 12, 17);
        b.d[29] = (uint8_t)(c >> 24), b.d[30] = (uint8_t)(c >> 16), b.d[31] = (uint8_t)(c >> 8), b.d[32] = (uint8_t)c;
        expect_error("short image data", b, "truncated");
    }
    {
        uint8_t rows[6] = { 0 };
        b = make_png(1, 1, 8, 2, rows, 3, NULL, 0, 0);
        b.d[16] = 0x7f;                       /* width 2^31 - ... */
        uLong c = crc32(crc32(0, NULL, 0), b.d + 12, 17);
        b.d[29] = (uint8_t)(c >> 24), b.d[30] = (uint8_t)(c >> 16), b.d[31] = (uint8_t)(c >> 8), b.d[32] = (uint8_t)c;
        expect_error("huge width", b, "out of range");
    }
}

static void check_roundtrip(test_rng *r)
{
    int w = 17, h = 9, gw, gh;
    uint8_t *img = malloc((size_t)w * h * 3), *got = NULL;
    char path[] = "/tmp/td_png_XXXXXX";
    int fd = mkstemp(path);
    td_ctx ctx;

    td_ctx_init(&ctx);
    for (int i = 0; i < w * h * 3; i++)
        img[i] = (uint8_t)(test_next(r) >> 56);
    CHECK(fd >= 0 && td_png_write(&ctx, path, img, w, h, (ptrdiff_t)w * 3) == 0 &&
          td_png_read(&ctx, path, &got, &gw, &gh) == 0 && gw == w && gh == h &&
          !memcmp(got, img, (size_t)w * h * 3), "write then read gives the image back (%s)", ctx.errmsg);
    CHECK(td_png_read(&ctx, "/nonexistent/x.png", &got, &gw, &gh) < 0 &&
          strstr(ctx.errmsg, "/nonexistent/x.png"), "a missing file is named: %s", ctx.errmsg);
    remove(path);
    free(img);
    free(got);
}

int main(void)
{
    test_rng r = test_rng_seeded();
    static const int kinds[][2] = { { 8, 0 }, { 1, 0 }, { 2, 0 }, { 4, 0 }, { 16, 0 }, { 8, 2 },
                                    { 16, 2 }, { 1, 3 }, { 2, 3 }, { 4, 3 }, { 8, 3 }, { 8, 4 },
                                    { 16, 4 }, { 8, 6 }, { 16, 6 } };
    for (int rep = 0; rep < 3; rep++)
        for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
            check_kind(&r, kinds[k][0], kinds[k][1]);
    check_errors(&r);
    check_roundtrip(&r);
    return check_summary();
}
