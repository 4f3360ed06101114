/*
 * turbodiff tokenize: prompt -> umT5 token ids (</s> included), one line of
 * space-separated ids per text. --file reads one text per line with \n, \t
 * and \\ escapes, so texts holding newlines or tabs fit on a line (the
 * parity tier batches thousands of strings through one call).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "text/prompt_clean.h"
#include "text/tokenizer.h"

#define MAX_IDS 512

static void usage(FILE *f)
{
    fprintf(f, "usage: turbodiff tokenize --tokenizer FILE [--clean] [--max-len N] (TEXT | --file F)\n"
               "  --tokenizer FILE  spiece.model, tokenizer.json (T5/umT5 Unigram), or a safetensors\n"
               "                    file with a spiece_model tensor\n"
               "  --clean           apply Wan's prompt cleaning first (HTML entities, whitespace)\n"
               "  --max-len N       at most N ids, </s> included (default and maximum 512)\n"
               "  --file F          one text per line, with \\n \\t \\\\ escapes; '-' is stdin\n");
}

/* Undo the line format's escapes in place. */
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

static int print_ids(td_ctx *ctx, const td_tokenizer *tok, const char *text, int clean, int max_len)
{
    int32_t ids[MAX_IDS];
    char *cleaned = NULL;
    int n = 0;
    if (clean)
        TD_TRY(td_prompt_clean(ctx, text, &cleaned));
    int rc = td_tokenizer_encode(ctx, tok, cleaned ? cleaned : text, max_len, ids, &n);
    free(cleaned);
    TD_TRY(rc);
    for (int i = 0; i < n; i++)
        printf("%s%d", i ? " " : "", ids[i]);
    putchar('\n');
    return 0;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *path = NULL, *file = NULL, *text = NULL;
    int clean = 0, max_len = MAX_IDS, rc = 0;
    td_tokenizer *tok = NULL;
    td_ctx ctx;

    td_ctx_init(&ctx);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--clean")) { clean = 1; continue; }
        if (argv[i][0] == '-' && argv[i][1] == '-' && i + 1 < argc) {
            const char *v = argv[++i];
            if (!strcmp(argv[i - 1], "--tokenizer")) path = v;
            else if (!strcmp(argv[i - 1], "--file")) file = v;
            else if (!strcmp(argv[i - 1], "--max-len")) {
                char *end;
                max_len = (int)strtol(v, &end, 10);
                if (*end || max_len < 1 || max_len > MAX_IDS) {
                    fprintf(stderr, "turbodiff tokenize: --max-len %s is not in 1..%d\n", v, MAX_IDS);
                    return 2;
                }
            } else {
                fprintf(stderr, "turbodiff tokenize: unknown option '%s'\n", argv[i - 1]);
                return 2;
            }
        } else if (!text && !(argv[i][0] == '-' && argv[i][1] == '-')) {
            text = argv[i];
        } else {
            fprintf(stderr, "turbodiff tokenize: unexpected '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!path || (!text == !file)) {
        usage(stderr);
        return 2;
    }
    rc = td_tokenizer_load(&ctx, path, &tok);
    if (rc == 0 && text)
        rc = print_ids(&ctx, tok, text, clean, max_len);
    if (rc == 0 && file) {
        FILE *f = strcmp(file, "-") ? fopen(file, "r") : stdin;
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        if (!f)
            rc = td_fail(&ctx, TD_EIO, "cannot open %s", file);
        while (rc == 0 && f && (len = getline(&line, &cap, f)) >= 0) {
            if (len && line[len - 1] == '\n')
                line[len - 1] = '\0';
            unescape(line);
            rc = print_ids(&ctx, tok, line, clean, max_len);
        }
        free(line);
        if (f && f != stdin)
            fclose(f);
    }
    if (rc < 0)
        fprintf(stderr, "turbodiff tokenize: %s\n", ctx.errmsg);
    td_tokenizer_free(&tok);
    return rc < 0 ? 1 : 0;
}
