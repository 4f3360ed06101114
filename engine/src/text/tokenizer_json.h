/* tokenizer.json (Hugging Face tokenizers, T5/umT5 subset) -> td_spm_model. */
#ifndef TD_TEXT_TOKENIZER_JSON_H
#define TD_TEXT_TOKENIZER_JSON_H

#include "spm_model.h"

int td_spm_model_from_json(td_ctx *ctx, const char *what, const uint8_t *data, size_t size,
                           td_spm_model *m);

#endif
