/* Image-to-video through td_job_run on the committed tiny A14B-style pair
 * (tests/data/pipeline/i2v, random weights, 36-channel experts): exact
 * frame counts, determinism, the image and the seed both matter, low-memory
 * residency gives the same frames, adaptive resolution sizes the frames, and
 * a model set that does not fit the job is refused with a message. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "pipeline_cases.h"
#include "turbodiff.h"

typedef struct sink {
    int frames, width, height, bad;
    uint64_t hash;
} sink;

static int on_frame(void *opaque, const td_frame *f)
{
    sink *s = opaque;
    const uint8_t *p = f->data;
    if (f->width != s->width || f->height != s->height || f->index != s->frames)
        s->bad++;
    for (int i = 0; i < f->width * f->height * 3; i++)
        s->hash = (s->hash ^ p[i]) * 1099511628211ull;
    s->frames++;
    return 0;
}

typedef struct image {
    uint8_t *rgb;
    int w, h;
} image;

static image random_image(test_rng *r, int w, int h)
{
    image im = { malloc((size_t)w * h * 3), w, h };
    for (int i = 0; im.rgb && i < w * h * 3; i++)
        im.rgb[i] = (uint8_t)(test_next(r) >> 56);
    return im;
}

static int run(td_engine *eng, const image *im, uint64_t seed, int adaptive, sink *s, td_error *err)
{
    td_job job;
    td_job_default(&job);
    job.prompt = "a red circle moves right on a blue background";
    if (im) {
        job.image = im->rgb;
        job.image_width = im->w;
        job.image_height = im->h;
        job.image_linesize = (ptrdiff_t)im->w * 3;
    }
    job.adaptive_resolution = adaptive;
    job.width = 32;
    job.height = 16;
    job.frames = 6;
    job.steps = 4;       /* sigma_max 200: two steps per expert at boundary 0.9 */
    job.seed = seed;
    job.on_frame = on_frame;
    job.opaque = s;
    job.error = err;
    td_job_output_size(&job, &s->width, &s->height);
    s->hash = 1469598103934665603ull;
    return td_job_run(eng, &job);
}

static td_engine *open_set(const char *dir, int low_memory)
{
    td_engine *eng = NULL;
    td_error err = { 0 };
    CHECK(tc_open(dir, "auto", NULL, low_memory, &eng, &err) == 0, "open %s: %s", dir, err.msg);
    return eng;
}

int main(void)
{
    test_rng r = test_rng_seeded();
    image im = random_image(&r, 37, 23), other = random_image(&r, 37, 23);
    image tall = random_image(&r, 20, 60);
    td_engine *eng = open_set(TD_ROOT "/tests/data/pipeline/i2v", 0), *t2v;
    sink a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 }, e = { 0 }, f = { 0 }, g = { 0 };
    td_error err = { 0 };

    if (!eng || !im.rgb || !other.rgb || !tall.rgb)
        return check_summary();
    CHECK(run(eng, &im, 7, 0, &a, &err) == 0, "i2v: %s", err.msg);
    CHECK(a.frames == 6 && a.width == 32 && a.height == 16 && !a.bad,
          "6 frames of 32x16 asked, %d delivered (%d misshapen or out of order)", a.frames, a.bad);
    CHECK(run(eng, &im, 7, 0, &b, &err) == 0 && b.hash == a.hash, "same image and seed, same frames");
    CHECK(run(eng, &im, 8, 0, &c, &err) == 0 && c.hash != a.hash, "another seed, other frames");
    CHECK(run(eng, &other, 7, 0, &d, &err) == 0 && d.hash != a.hash, "another image, other frames");

    /* 20x60 at the area of 32x16: sqrt(512 / 3) = 13.1 -> 16 wide,
     * sqrt(512 * 3) = 39.2 -> 32 high */
    CHECK(run(eng, &tall, 7, 1, &e, &err) == 0 && e.width == 16 && e.height == 32 &&
          e.frames == 6 && !e.bad, "adaptive: %dx%d frames for a 20x60 image (expected 16x32): %s",
          e.width, e.height, err.msg);

    err.msg[0] = '\0';
    CHECK(run(eng, NULL, 7, 0, &f, &err) == TD_EINVAL && strstr(err.msg, "give it an image"),
          "an i2v model without an image is refused: '%s'", err.msg);
    td_engine_release(&eng);

    /* Residency must not change a single value: one expert mapped at a
     * time, the encoder unmapped after use. */
    eng = open_set(TD_ROOT "/tests/data/pipeline/i2v", 1);
    CHECK(eng && run(eng, &im, 7, 0, &g, &err) == 0 && g.hash == a.hash,
          "low_memory gives the same frames: %s", err.msg);
    memset(&g, 0, sizeof(g));
    CHECK(eng && run(eng, &im, 7, 0, &g, &err) == 0 && g.hash == a.hash,
          "low_memory, second job (experts remapped): same frames: %s", err.msg);
    td_engine_release(&eng);

    t2v = open_set(TD_ROOT "/tests/data/pipeline", 0);
    err.msg[0] = '\0';
    memset(&f, 0, sizeof(f));
    CHECK(t2v && run(t2v, &im, 7, 0, &f, &err) == TD_EINVAL && strstr(err.msg, "text-to-video"),
          "an image for a t2v model is refused: '%s'", err.msg);
    td_engine_release(&t2v);
    free(im.rgb);
    free(other.rgb);
    free(tall.rgb);
    return check_summary();
}
