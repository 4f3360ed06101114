/*
 * turbodiff inspect [--hash] FILE: one line per tensor,
 * name<TAB>dtype<TAB>shape[<TAB>sha256], in file order.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "core/sha256.h"
#include "io/weights.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: turbodiff inspect [--hash] FILE\n"
               "  Lists the tensors of a safetensors or PyTorch .pth file:\n"
               "  name, dtype, comma-separated shape and, with --hash, the SHA-256 of\n"
               "  the tensor's bytes (little-endian, C order).\n");
}

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int hash = 0;
    td_ctx ctx;
    td_weights *w;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--hash"))
            hash = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "turbodiff inspect: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else
            path = argv[i];
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    td_ctx_init(&ctx);
    if (td_weights_open(&ctx, path, &w) < 0) {
        fprintf(stderr, "turbodiff inspect: %s\n", ctx.errmsg);
        return 1;
    }
    for (int i = 0; i < td_weights_count(w); i++) {
        const td_tensor *t = td_weights_tensor(w, i);
        printf("%s\t%s\t", td_weights_name(w, i), td_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            printf("%s%lld", d ? "," : "", (long long)t->shape[d]);
        if (hash) {
            uint8_t dig[32];
            char hex[65];
            td_sha256_tensor(t, dig);
            td_sha256_hex(dig, hex);
            printf("\t%s", hex);
        }
        putchar('\n');
    }
    td_weights_close(&w);
    if (fflush(stdout)) {
        fprintf(stderr, "turbodiff inspect: cannot write the listing\n");
        return 1;
    }
    return 0;
}
