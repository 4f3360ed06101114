/* libFuzzer target: the .npy reader. */
#include "io/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    td_ctx ctx;
    td_tensor t;

    td_ctx_init(&ctx);
    if (td_npy_read_bytes(&ctx, "fuzz", data, size, &t) == 0)
        td_tensor_free(&t);
    return 0;
}
