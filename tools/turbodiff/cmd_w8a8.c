/*
 * turbodiff w8a8: debug entry to the CPU W8A8 linear, for the parity tier
 * (tests/parity/test_w8a8.py). Inputs and outputs are raw little-endian
 * arrays so the check depends on nothing but this op: it writes the int8
 * activations and block scales exactly as quantized, and y.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "commands.h"
#include "core/pool.h"

static const char usage_text[] =
    "usage: turbodiff w8a8 M K N X WQ WSCALE BIAS OUT\n"
    "  X       M*K float32          WQ      N*K int8\n"
    "  WSCALE  ceil(N/128)*ceil(K/128) float32\n"
    "  BIAS    N float32, or - for none\n"
    "writes OUT.xq (M*K int8), OUT.xs (ceil(M/128)*ceil(K/128) float32), OUT.y (M*N float32)\n";

static int read_exact(const char *path, void *buf, size_t n)
{
    FILE *f = fopen(path, "rb");
    long size;
    int ok;
    if (!f) {
        fprintf(stderr, "turbodiff w8a8: cannot open %s\n", path);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    ok = size >= 0 && (size_t)size == n && fread(buf, 1, n, f) == n;
    fclose(f);
    if (!ok)
        fprintf(stderr, "turbodiff w8a8: %s holds %ld bytes, expected %zu\n", path, size, n);
    return ok ? 0 : -1;
}

static int write_all(const char *prefix, const char *ext, const void *buf, size_t n)
{
    char path[4096];
    FILE *f;
    int ok;
    snprintf(path, sizeof(path), "%s.%s", prefix, ext);
    f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "turbodiff w8a8: cannot create %s\n", path);
        return -1;
    }
    ok = fwrite(buf, 1, n, f) == n;
    ok &= fclose(f) == 0;
    if (!ok)
        fprintf(stderr, "turbodiff w8a8: cannot write %s\n", path);
    return ok ? 0 : -1;
}

static int parse_dim(const char *s, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > (1 << 20)) {
        fprintf(stderr, "turbodiff w8a8: dimension '%s' must be 1..1048576\n", s);
        return -1;
    }
    *out = v;
    return 0;
}

int cmd_w8a8(int argc, char **argv)
{
    int64_t m, k, n, nkb, nmb, nnb;
    td_ctx ctx;
    td_backend *be = NULL;
    td_tensor x = { 0 }, wq = { 0 }, ws = { 0 }, b = { 0 }, y = { 0 };
    int8_t *xq = NULL;
    float *xs = NULL;
    int rc = 1;

    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc != 9) {
        fputs(usage_text, stderr);
        return 2;
    }
    if (parse_dim(argv[1], &m) || parse_dim(argv[2], &k) || parse_dim(argv[3], &n))
        return 2;
    nkb = (k + 127) / 128;
    nmb = (m + 127) / 128;
    nnb = (n + 127) / 128;
    td_ctx_init(&ctx);
    if (td_pool_create(&ctx, 0, &ctx.pool) < 0 || td_backend_cpu_create(&ctx, 0, &be) < 0 ||
        td_tensor_new(&ctx, &x, TD_F32, 2, (int64_t[]){ m, k }) < 0 ||
        td_tensor_new(&ctx, &wq, TD_I8, 2, (int64_t[]){ n, k }) < 0 ||
        td_tensor_new(&ctx, &ws, TD_F32, 2, (int64_t[]){ nnb, nkb }) < 0 ||
        td_tensor_new(&ctx, &b, TD_F32, 1, (int64_t[]){ n }) < 0 ||
        td_tensor_new(&ctx, &y, TD_F32, 2, (int64_t[]){ m, n }) < 0 ||
        !(xq = malloc((size_t)(m * k))) || !(xs = malloc(sizeof(float) * (size_t)(nmb * nkb)))) {
        fprintf(stderr, "turbodiff w8a8: %s\n", ctx.err ? ctx.errmsg : "out of memory");
        goto done;
    }
    if (read_exact(argv[4], x.data, td_nbytes(&x)) || read_exact(argv[5], wq.data, td_nbytes(&wq)) ||
        read_exact(argv[6], ws.data, td_nbytes(&ws)) ||
        (strcmp(argv[7], "-") && read_exact(argv[7], b.data, td_nbytes(&b))))
        goto done;
    td_cpu_w8a8_quantize(ctx.pool, x.data, m, k, xq, xs);
    if (be->ops->linear_w8a8(be, &x, &wq, &ws, strcmp(argv[7], "-") ? &b : NULL, &y) < 0) {
        fprintf(stderr, "turbodiff w8a8: %s\n", ctx.errmsg);
        goto done;
    }
    if (write_all(argv[8], "xq", xq, (size_t)(m * k)) ||
        write_all(argv[8], "xs", xs, sizeof(float) * (size_t)(nmb * nkb)) ||
        write_all(argv[8], "y", y.data, td_nbytes(&y)))
        goto done;
    rc = 0;
done:
    free(xq);
    free(xs);
    td_tensor_free(&x);
    td_tensor_free(&wq);
    td_tensor_free(&ws);
    td_tensor_free(&b);
    td_tensor_free(&y);
    td_backend_destroy(&be);
    td_pool_destroy(&ctx.pool);
    return rc;
}
