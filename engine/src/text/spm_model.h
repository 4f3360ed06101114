/*
 * A SentencePiece unigram model as the tokenizer needs it: pieces with
 * scores and types, the special ids, and the normalizer spec. Filled from
 * sentencepiece's ModelProto (spm_model.c, our own protobuf reader) or from
 * a Hugging Face tokenizer.json (tokenizer_json.c).
 */
#ifndef TD_TEXT_SPM_MODEL_H
#define TD_TEXT_SPM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

/* sentencepiece's SentencePiece.Type */
enum { TD_PIECE_NORMAL = 1, TD_PIECE_UNKNOWN = 2, TD_PIECE_CONTROL = 3,
       TD_PIECE_USER_DEFINED = 4, TD_PIECE_UNUSED = 5, TD_PIECE_BYTE = 6 };

typedef struct td_spm_piece {
    char *text;              /* UTF-8, NUL-terminated */
    size_t len;
    float score;
    int type;
} td_spm_piece;

typedef struct td_spm_model {
    td_spm_piece *pieces;
    int n_pieces;
    int unk_id, eos_id;
    int byte_fallback;
    /* Viterbi path scores summed in f64 (Hugging Face tokenizers) instead
     * of f32 (sentencepiece): it decides ties between equal splits. */
    int f64_path_scores;
    /* normalizer_spec */
    uint8_t *charsmap;       /* precompiled_charsmap, NULL: identity */
    size_t charsmap_len;
    int add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
} td_spm_model;

/* Parse a serialized ModelProto (spiece.model). what names the source in
 * errors. Only unigram models are accepted. */
int td_spm_model_parse(td_ctx *ctx, const char *what, const uint8_t *data, size_t size,
                       td_spm_model *m);
void td_spm_model_free(td_spm_model *m);

#endif
