/*
 * sentencepiece's normalizer: the precompiled charsmap (NFKC and friends
 * compiled into a double-array trie of replacement strings), whitespace
 * trimming and collapsing, the dummy prefix, and spaces escaped to U+2581.
 */
#ifndef TD_TEXT_NORMALIZER_H
#define TD_TEXT_NORMALIZER_H

#include "spm_model.h"

/* Check the charsmap's layout once at load (trie size within the blob). */
int td_charsmap_check(td_ctx *ctx, const char *what, const uint8_t *map, size_t len);

/* Normalize text (n bytes) into a new NUL-terminated string *out of *out_len
 * bytes (the caller frees it). */
int td_normalize(td_ctx *ctx, const td_spm_model *m, const char *text, size_t n,
                 char **out, size_t *out_len);

#endif
