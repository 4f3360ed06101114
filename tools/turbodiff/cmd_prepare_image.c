/*
 * turbodiff prepare-image: the start image as the image-to-video pipeline
 * sees it (resized, or sized adaptively, and scaled to [-1, 1]), as .npy
 * [3, H, W]. Shows a user what the model is given, and lets the parity tier
 * hold the resampling against torchvision.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "io/npy.h"
#include "io/png.h"
#include "pipeline/image_cond.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: turbodiff prepare-image --image START.png --size WxH [--adaptive] --out IMG.npy\n"
               "  --size WxH     the clip's size (with --adaptive: its area)\n"
               "  --adaptive     keep the image's aspect ratio, sides multiples of 16\n");
}

int cmd_prepare_image(int argc, char **argv)
{
    const char *in = NULL, *out = NULL;
    int w = 0, h = 0, adaptive = 0, iw, ih, rc;
    uint8_t *rgb = NULL;
    td_tensor img = { 0 };
    td_ctx ctx;

    td_ctx_init(&ctx);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--adaptive")) { adaptive = 1; continue; }
        if (!v || (strcmp(a, "--image") && strcmp(a, "--out") && strcmp(a, "--size"))) {
            fprintf(stderr, "turbodiff prepare-image: option '%s' is unknown or needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--image")) in = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (sscanf(v, "%dx%d", &w, &h) != 2 || w < 1 || h < 1 || w > 4096 || h > 4096) {
            fprintf(stderr, "turbodiff prepare-image: bad --size '%s' (WxH, 1 to 4096 a side)\n", v);
            return 2;
        }
    }
    if (!in || !out || !w) {
        usage(stderr);
        return 2;
    }
    rc = td_png_read(&ctx, in, &rgb, &iw, &ih);
    if (rc == 0 && adaptive)
        td_i2v_adaptive_size(iw, ih, w, h, &w, &h);
    if (rc == 0)
        rc = td_image_prepare(&ctx, rgb, iw, ih, (ptrdiff_t)iw * 3, w, h, &img);
    if (rc == 0)
        rc = td_npy_write(&ctx, out, &img);
    if (rc < 0)
        fprintf(stderr, "turbodiff prepare-image: %s\n", ctx.errmsg);
    td_tensor_free(&img);
    free(rgb);
    return rc < 0 ? 1 : 0;
}
