/* libFuzzer target: PyTorch zip checkpoints (zip reader, unpickler, views). */
#include "fuzz_weights_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_open_weights(data, size);
    return 0;
}
