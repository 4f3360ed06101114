/*
 * turbodiff lora-merge: a float DiT checkpoint with LoRAs merged in, written
 * as safetensors (every tensor kept under its stored name and dtype; those a
 * LoRA changes replaced by their merged values). It is what the engine
 * uploads when it opens with the same LoRAs, so it serves to check the
 * merge against other implementations, and to make a float checkpoint that
 * `turbodiff quantize` turns into a W8A8 one with the LoRAs in it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "dit/lora.h"
#include "io/safetensors_write.h"
#include "io/weights.h"
#include "lora_arg.h"

typedef struct merge_out {
    td_ctx *ctx;
    const td_weights *w;
    const td_lora_merged *m;
} merge_out;

static void usage(FILE *f)
{
    fprintf(f, "usage: turbodiff lora-merge --dit DIT.pth|DIT.safetensors --lora FILE[=SCALE]... --out OUT.safetensors\n"
               "  merges each LoRA (SCALE default 1), in order, into the DiT's float weights\n");
}

static int fill(void *opaque, int i, void *dst, size_t nbytes)
{
    const merge_out *o = opaque;
    const td_tensor *base = td_weights_tensor(o->w, i), *merged = td_lora_merged_find(o->m, base);
    const td_tensor *src = merged ? merged : base;
    td_tensor view = td_view(dst, src->dtype, src->ndim, src->shape);
    (void)nbytes;
    return td_tensor_copy(o->ctx, &view, src);
}

static int write_merged(td_ctx *ctx, const td_weights *w, const td_lora_merged *m, const char *out)
{
    int n = td_weights_count(w), rc;
    td_st_item *items = calloc((size_t)n + 1, sizeof(*items));
    merge_out o = { ctx, w, m };
    if (!items)
        return td_fail(ctx, TD_ENOMEM, "out of memory for %d tensor entries", n);
    for (int i = 0; i < n; i++) {
        const td_tensor *t = td_weights_tensor(w, i);
        items[i].name = td_weights_name(w, i);
        items[i].dtype = t->dtype;
        items[i].ndim = t->ndim;
        memcpy(items[i].shape, t->shape, sizeof(items[i].shape));
    }
    rc = td_safetensors_write(ctx, out, items, n, fill, &o);
    free(items);
    return rc;
}

int cmd_lora_merge(int argc, char **argv)
{
    const char *dit = NULL, *out = NULL;
    lora_args lora = { 0 };
    td_ctx ctx;
    td_weights *w = NULL;
    td_lora_merged *m = NULL;
    int rc;

    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc || (strcmp(o, "--dit") && strcmp(o, "--out") && strcmp(o, "--lora"))) {
            fprintf(stderr, "turbodiff lora-merge: '%s' %s\n", o, i + 1 < argc ? "is unknown" : "needs a value or is unknown");
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(o, "--dit"))
            dit = argv[i];
        else if (!strcmp(o, "--out"))
            out = argv[i];
        else if (!lora_arg_add(&lora, "lora-merge", argv[i]))
            return 2;
    }
    if (!dit || !out || !lora.n) {
        usage(stderr);
        return 2;
    }
    td_ctx_init(&ctx);
    rc = td_weights_open(&ctx, dit, &w);
    if (rc == 0)
        rc = td_lora_merge(&ctx, w, lora.l, lora.n, &m);
    if (rc == 0)
        rc = write_merged(&ctx, w, m, out);
    if (rc == 0)
        printf("%s: %d LoRA(s), %d tensors merged\n", out, lora.n, td_lora_merged_count(m));
    else
        fprintf(stderr, "turbodiff lora-merge: %s\n", ctx.errmsg);
    td_lora_merged_free(&m);
    td_weights_close(&w);
    return rc < 0 ? 1 : 0;
}
