/* A .y4m writer for decoded frames (vae-decode, t2v, generate): 8-bit
 * 4:2:0 (C420jpeg: chroma sited between the 2x2 pixels it averages), BT.601
 * limited range (Y 16-235, Cb/Cr 16-240), 16 fps. */
#ifndef TD_TOOLS_Y4M_H
#define TD_TOOLS_Y4M_H

#include <stdint.h>
#include <stdio.h>

#include "core/tensor.h"

typedef struct y4m_out {
    FILE *f;
    uint8_t *buf;     /* one frame, H * W * 3 / 2 bytes */
    int failed;
} y4m_out;

int y4m_header(FILE *f, int64_t w, int64_t h);
/* One frame of packed float RGB in [0, 255], converted without rounding
 * first; sets and returns failed on a write error. */
int y4m_write_rgb(y4m_out *o, const float *rgb, int64_t W, int64_t H);
/* A td_vae_frames_fn: frames [3, n, H, W] in [-1, 1]; sets failed on a write error. */
int y4m_write_frames(void *opaque, int64_t first, const td_tensor *frames);

#endif
