/*
 * turbodiff quantize: a float Wan / TurboDiffusion DiT checkpoint (.pth or
 * .safetensors, bf16/f16/f32) into TurboDiffusion's W8A8 "-quant" layout
 * (int8_weight + per-128x128-block scale for the block Linears; see
 * engine/src/dit/dit_quantize.h), written as safetensors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "core/pool.h"
#include "dit/dit_quantize.h"
#include "io/weights.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: turbodiff quantize --in DIT.pth|DIT.safetensors --out OUT.safetensors [--threads N]\n"
               "  quantizes every block Linear but proj_l as TurboDiffusion's Int8Linear does:\n"
               "  <name>.int8_weight int8 [N, K] + <name>.scale f32 [ceil(N/128), ceil(K/128)];\n"
               "  every other tensor is copied unchanged\n");
}

int cmd_quantize(int argc, char **argv)
{
    const char *in = NULL, *out = NULL;
    int threads = 0, n = 0, rc;
    td_ctx ctx;
    td_weights *w = NULL;

    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v || (strcmp(o, "--in") && strcmp(o, "--out") && strcmp(o, "--threads"))) {
            fprintf(stderr, "turbodiff quantize: '%s' %s\n", o, v ? "is unknown" : "needs a value or is unknown");
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(o, "--in"))
            in = v;
        else if (!strcmp(o, "--out"))
            out = v;
        else
            threads = atoi(v);
    }
    if (!in || !out) {
        usage(stderr);
        return 2;
    }
    td_ctx_init(&ctx);
    rc = td_pool_create(&ctx, threads, &ctx.pool);
    if (rc == 0)
        rc = td_weights_open(&ctx, in, &w);
    if (rc == 0)
        rc = td_dit_quantize(&ctx, w, out, &n);
    if (rc == 0)
        printf("%s: %d block Linears quantized to W8A8\n", out, n);
    else
        fprintf(stderr, "turbodiff quantize: %s\n", ctx.errmsg);
    td_weights_close(&w);
    td_pool_destroy(&ctx.pool);
    return rc < 0 ? 1 : 0;
}
