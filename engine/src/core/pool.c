#include "pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

struct td_pool {
    int nthreads;              /* workers + the caller */
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_cond_t work_cv, done_cv;
    pthread_mutex_t run_lock;  /* one td_pool_for at a time */
    uint64_t generation;       /* bumped per job, workers wait for a change */
    int pending, quit;
    td_range_fn fn;
    void *arg;
    int64_t n, chunk;
};

static void run_share(struct td_pool *p, int id)
{
    int64_t b = (int64_t)id * p->chunk, e = b + p->chunk;
    if (e > p->n)
        e = p->n;
    if (b < e)
        p->fn(p->arg, b, e);
}

static void *worker_main(void *opaque)
{
    struct td_pool *p = opaque;
    int id;
    uint64_t seen = 0;

    pthread_mutex_lock(&p->lock);
    id = ++p->pending;   /* startup handshake hands out ids 1..nthreads-1 */
    pthread_cond_signal(&p->done_cv);
    for (;;) {
        while (!p->quit && p->generation == seen)
            pthread_cond_wait(&p->work_cv, &p->lock);
        if (p->quit)
            break;
        seen = p->generation;
        pthread_mutex_unlock(&p->lock);
        run_share(p, id);
        pthread_mutex_lock(&p->lock);
        if (--p->pending == 0)
            pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int td_pool_create(td_ctx *ctx, int nthreads, td_pool **out)
{
    struct td_pool *p;

    *out = NULL;
    if (nthreads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = n > 0 ? (int)n : 1;
    }
    if (nthreads > 256)
        return td_fail(ctx, TD_EINVAL, "threads %d is more than 256", nthreads);
    p = calloc(1, sizeof(*p));
    if (!p)
        return td_fail(ctx, TD_ENOMEM, "cannot allocate the thread pool");
    p->nthreads = nthreads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->run_lock, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->workers = calloc((size_t)nthreads, sizeof(*p->workers));
    if (!p->workers) {
        td_pool *tmp = p;
        p->nthreads = 1;
        td_pool_destroy(&tmp);
        return td_fail(ctx, TD_ENOMEM, "cannot allocate the thread pool");
    }
    pthread_mutex_lock(&p->lock);
    for (int i = 1; i < nthreads; i++) {
        if (pthread_create(&p->workers[i], NULL, worker_main, p)) {
            p->nthreads = i;
            break;
        }
    }
    while (p->pending < p->nthreads - 1)
        pthread_cond_wait(&p->done_cv, &p->lock);
    p->pending = 0;
    pthread_mutex_unlock(&p->lock);
    *out = p;
    return 0;
}

void td_pool_destroy(td_pool **pool)
{
    struct td_pool *p = *pool;
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->quit = 1;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->nthreads; i++)
        pthread_join(p->workers[i], NULL);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->run_lock);
    free(p->workers);
    free(p);
    *pool = NULL;
}

int td_pool_threads(const td_pool *pool)
{
    return pool ? pool->nthreads : 1;
}

void td_pool_for(td_pool *p, int64_t n, int64_t min_chunk, td_range_fn fn, void *arg)
{
    int64_t parts;

    if (n <= 0)
        return;
    if (min_chunk < 1)
        min_chunk = 1;
    parts = p ? p->nthreads : 1;
    if (parts > (n + min_chunk - 1) / min_chunk)
        parts = (n + min_chunk - 1) / min_chunk;
    if (!p || parts <= 1) {
        fn(arg, 0, n);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->chunk = (n + p->nthreads - 1) / p->nthreads;
    if (p->chunk < min_chunk)
        p->chunk = min_chunk;
    p->pending = p->nthreads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->lock);

    run_share(p, 0);

    pthread_mutex_lock(&p->lock);
    while (p->pending > 0)
        pthread_cond_wait(&p->done_cv, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->run_lock);
}
