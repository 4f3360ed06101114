/*
 * Unigram segmentation as sentencepiece does it: Viterbi over every piece
 * that matches at each character, unknown characters scored at
 * min(score) - 10, then unknown pieces spelled as <0xNN> byte pieces when
 * the model has byte fallback.
 */
#ifndef TD_TEXT_UNIGRAM_H
#define TD_TEXT_UNIGRAM_H

#include "spm_model.h"

typedef struct td_unigram td_unigram;

/* Index m's pieces (m must outlive the index). */
int td_unigram_create(td_ctx *ctx, const td_spm_model *m, td_unigram **out);
void td_unigram_free(td_unigram **u);

/* Segment normalized text (n bytes) into ids: *count becomes the number of
 * ids the text makes, of which the first cap are stored (callers truncate). */
int td_unigram_encode(td_ctx *ctx, const td_unigram *u, const char *text, size_t n,
                      int32_t *ids, int cap, int *count);

#endif
