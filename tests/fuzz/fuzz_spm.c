/* libFuzzer target: the SentencePiece protobuf reader (or, for inputs
 * starting with '{', the tokenizer.json reader), the charsmap trie walk and
 * Viterbi, on whatever model bytes the fuzzer makes. */
#include "text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    td_ctx ctx;
    td_tokenizer *tok = NULL;
    int32_t ids[64];
    int n;

    td_ctx_init(&ctx);
    int rc = size && data[0] == '{'
                 ? td_tokenizer_load_json(&ctx, "fuzz", (const char *)data, size, &tok)
                 : td_tokenizer_load_bytes(&ctx, "fuzz", data, size, &tok);
    if (rc == 0) {
        td_tokenizer_encode(&ctx, tok, "  Hello, wörld! 日本語 \xf0\x9f\x98\x80 \xff x  ", 64, ids, &n);
        td_tokenizer_free(&tok);
    }
    return 0;
}
