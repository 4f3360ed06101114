/*
 * bench_vae VAE_FILE T h w [threads]: decode T random latent frames
 * (seeded, N(0,1)-like) of h x w through the streaming decoder; prints the
 * seconds of each chunk (1 frame, then 4 per latent frame), the total, and
 * the process's peak RSS. Frames are dropped after each chunk, as a
 * streaming consumer would, so the peak is the decoder's own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "core/pool.h"
#include "io/weights.h"
#include "vae/vae.h"

typedef struct timing {
    double t0, last;
    int chunk;
} timing;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int on_frames(void *opaque, int64_t first, const td_tensor *f)
{
    timing *t = opaque;
    double n = now();
    printf("chunk %d frames %lld-%lld seconds %.2f\n", t->chunk++, (long long)first,
           (long long)(first + f->shape[1] - 1), n - t->last);
    fflush(stdout);
    t->last = n;
    return 0;
}

int main(int argc, char **argv)
{
    td_ctx ctx;
    td_backend *be = NULL;
    td_weights *w = NULL;
    td_vae *vae = NULL;
    td_tensor lat = { 0 }, dev = { 0 };
    timing tm = { 0 };
    struct rusage ru;
    uint64_t s = 12345;
    int rc;

    if (argc < 5) {
        fprintf(stderr, "usage: bench_vae VAE_FILE T h w [threads]\n");
        return 2;
    }
    td_ctx_init(&ctx);
    rc = td_pool_create(&ctx, argc > 5 ? atoi(argv[5]) : 0, &ctx.pool);
    if (rc == 0)
        rc = td_backend_cpu_create(&ctx, 0, &be);
    if (rc == 0)
        rc = td_weights_open(&ctx, argv[1], &w);
    if (rc == 0)
        rc = td_vae_load(be, w, &vae);
    if (rc == 0)
        rc = td_tensor_new(&ctx, &lat, TD_F32, 4,
                           (int64_t[]){ td_vae_z_dim(vae), atoll(argv[2]), atoll(argv[3]), atoll(argv[4]) });
    if (rc == 0) {
        float *x = lat.data;
        for (int64_t i = 0; i < td_numel(&lat); i++) {
            /* sum of 4 uniforms, scaled to unit variance */
            double v = 0;
            for (int k = 0; k < 4; k++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                v += (double)(s >> 11) / 9007199254740992.0 - 0.5;
            }
            x[i] = (float)(v * 1.7320508);
        }
        rc = be->ops->tensor_new(be, &dev, be->act, 4, lat.shape);
        if (rc == 0)
            rc = be->ops->write(be, &dev, &lat);
    }
    if (rc == 0) {
        tm.t0 = tm.last = now();
        rc = td_vae_decode(vae, &dev, NULL, on_frames, &tm);
    }
    if (rc < 0) {
        fprintf(stderr, "bench_vae: %s\n", ctx.errmsg);
    } else {
        getrusage(RUSAGE_SELF, &ru);
        printf("total seconds %.2f\npeak_rss_mb %.0f\n", now() - tm.t0, (double)ru.ru_maxrss / 1024.0);
    }
    td_tensor_free(&lat);
    if (be)
        be->ops->tensor_free(be, &dev);
    td_vae_free(&vae);
    td_weights_close(&w);
    td_backend_destroy(&be);
    td_pool_destroy(&ctx.pool);
    return rc < 0 ? 1 : 0;
}
