/*
 * Test double for td_job_run, preloaded (LD_PRELOAD) into the built ffmpeg so
 * that the filters' frame path (worker thread, queue, pts, metadata, clips,
 * commands, image-to-video modes, cancel) is exercised before the real
 * generation pipeline exists. It draws a frame whose pixels depend on the
 * seed, the prompt, the input image and the frame index, honours the cancel
 * flag and the on_frame return value like the real pipeline must, and
 * sleeps TD_FAKE_FRAME_MS per frame to look like work. It delivers the
 * frame_format asked for (RGBF32: the same pixels as floats in [0, 1]). TD_FAKE_FAIL_AT=N
 * makes the job that would deliver the process's frame N (from 0) fail there
 * with TD_ENOMEM, as a device running out of memory mid-clip would.
 * TD_FAKE_ECHO_IMAGE=1 makes every frame the job's image (image to video, of
 * the job's size): what the filter hands the library, made visible.
 * TD_FAKE_SECONDS=S makes td_job_estimate say a clip takes S seconds, as a
 * slow device would (the filters warn above their time budget).
 * Everything else (engine open, validation, the estimate's memory) is the
 * real library.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "turbodiff.h"

int td_job_estimate(td_engine *eng, const td_job *job, td_estimate *out)
{
    int (*real)(td_engine *, const td_job *, td_estimate *) =
        (int (*)(td_engine *, const td_job *, td_estimate *))dlsym(RTLD_NEXT, "td_job_estimate");
    const char *s = getenv("TD_FAKE_SECONDS");
    int ret = real ? real(eng, job, out) : TD_EINVAL;
    if (ret == 0 && s)
        out->seconds = atof(s);
    return ret;
}

/* Frames delivered by every job of the process (for TD_FAKE_FAIL_AT). */
static long frames_delivered;

int td_job_run(td_engine *eng, const td_job *job)
{
    const char *ms_env = getenv("TD_FAKE_FRAME_MS");
    const char *fail_env = getenv("TD_FAKE_FAIL_AT");
    int echo = getenv("TD_FAKE_ECHO_IMAGE") && job->image &&
               job->image_width == job->width && job->image_height == job->height;
    struct timespec pause = { 0, (ms_env ? atol(ms_env) : 2) * 1000000L };
    uint32_t h = 2166136261u;
    uint8_t *rgb;
    float *rgbf = NULL;
    int f32 = job->frame_format == TD_FRAME_RGBF32;
    size_t n = (size_t)job->width * job->height * 3;
    int ret = td_job_validate(eng, job);

    if (ret < 0)
        return ret;
    for (const char *p = job->prompt; p && *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    h ^= (uint32_t)job->seed * 2654435761u;
    if (job->image)
        h ^= job->image[0] << 8 | job->image[job->image_linesize * (job->image_height / 2) + 3];
    if (!(rgb = malloc(n)) || (f32 && !(rgbf = malloc(n * sizeof(*rgbf))))) {
        free(rgb);
        return TD_ENOMEM;
    }
    for (int s = 1; s <= job->steps && job->on_progress; s++) {
        td_progress pr = { .stage = TD_STAGE_DENOISE, .step = s, .steps = job->steps };
        job->on_progress(job->opaque, &pr);
    }
    for (int i = 0; i < job->frames; i++) {
        td_frame f = { .index = i, .width = job->width, .height = job->height,
                       .format = job->frame_format, .data = f32 ? (void *)rgbf : rgb,
                       .linesize = 3 * job->width * (f32 ? sizeof(*rgbf) : 1) };
        if (job->cancel && __atomic_load_n(job->cancel, __ATOMIC_RELAXED)) {
            free(rgb);
            free(rgbf);
            return TD_ECANCELLED;
        }
        nanosleep(&pause, NULL);
        if (fail_env && __atomic_fetch_add(&frames_delivered, 1, __ATOMIC_RELAXED) == atol(fail_env)) {
            if (job->error) {
                job->error->code = TD_ENOMEM;
                snprintf(job->error->msg, sizeof(job->error->msg),
                         "out of memory (TD_FAKE_FAIL_AT=%s)", fail_env);
            }
            free(rgb);
            free(rgbf);
            return TD_ENOMEM;
        }
        for (size_t k = 0; k < n; k++)
            rgb[k] = (uint8_t)(h >> (k % 3 * 8)) + (uint8_t)(k / 3 % job->width) + (uint8_t)i * 7;
        for (int y = 0; echo && y < job->height; y++)
            memcpy(rgb + (size_t)y * 3 * job->width, job->image + (size_t)y * job->image_linesize,
                   3 * (size_t)job->width);
        for (size_t k = 0; f32 && k < n; k++)
            rgbf[k] = rgb[k] / 255.0f;
        if (job->on_frame(job->opaque, &f)) {
            free(rgb);
            free(rgbf);
            return TD_ECANCELLED;
        }
    }
    free(rgb);
    free(rgbf);
    if (job->on_progress) {
        td_progress pr = { .stage = TD_STAGE_DONE };
        job->on_progress(job->opaque, &pr);
    }
    return 0;
}
