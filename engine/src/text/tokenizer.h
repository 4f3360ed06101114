/*
 * The umT5 tokenizer: a SentencePiece unigram model loaded from
 * spiece.model, from tokenizer.json (tokenizer_json.c), or from a safetensors file carrying it as the uint8 tensor
 * `spiece_model` (ComfyUI's umt5_xxl_*.safetensors); the format is told by
 * content, not by name. Encoding = normalize, Viterbi, </s> appended, as
 * the Hugging Face T5 tokenizer Wan calls does.
 */
#ifndef TD_TEXT_TOKENIZER_H
#define TD_TEXT_TOKENIZER_H

#include <stdint.h>

#include "core/ctx.h"

typedef struct td_tokenizer td_tokenizer;

int td_tokenizer_load(td_ctx *ctx, const char *path, td_tokenizer **out);
/* From the bytes of a serialized ModelProto (what names them in errors). */
int td_tokenizer_load_bytes(td_ctx *ctx, const char *what, const uint8_t *data, size_t size,
                            td_tokenizer **out);
/* From the text of a Hugging Face tokenizer.json (the T5/umT5 subset). */
int td_tokenizer_load_json(td_ctx *ctx, const char *what, const char *json, size_t size,
                           td_tokenizer **out);
void td_tokenizer_free(td_tokenizer **tok);

/* ids of text followed by </s>, at most max_len (>= 1) of them: a longer
 * text is cut to max_len - 1 pieces and </s> (Hugging Face truncation with
 * special tokens). *n receives the count. */
int td_tokenizer_encode(td_ctx *ctx, const td_tokenizer *tok, const char *text, int max_len,
                        int32_t *ids, int *n);

int td_tokenizer_vocab_size(const td_tokenizer *tok);

#endif
