/* libFuzzer target: the restricted unpickler alone, on raw data.pkl bytes
 * (fuzz_pth reaches it only through a zip). Walks the result like pth.c. */
#include "io/pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    td_ctx ctx;
    td_pickle p;

    td_ctx_init(&ctx);
    if (td_pickle_load(&ctx, "fuzz", data, size, &p) < 0)
        return 0;
    /* Every value must be well formed: containers' items non-NULL, tensors
     * with a storage. */
    for (size_t i = 0; i < p.n_all; i++) {
        const td_pk *v = p.all[i];
        for (size_t k = 0; k < v->n; k++)
            if (!v->items[k] || v->items[k]->kind > TD_PK_TENSOR)
                __builtin_trap();
        if (v->kind == TD_PK_TENSOR && (!v->t || v->t->storage->kind != TD_PK_STORAGE))
            __builtin_trap();
    }
    td_pickle_free(&p);
    return 0;
}
