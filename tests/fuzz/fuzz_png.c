/* libFuzzer target: the PNG reader (start images come from users). */
#include <stdlib.h>

#include "io/png.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    td_ctx ctx;
    uint8_t *rgb = NULL;
    int w, h;

    td_ctx_init(&ctx);
    if (td_png_decode(&ctx, "fuzz", data, size, &rgb, &w, &h) == 0)
        free(rgb);
    return 0;
}
