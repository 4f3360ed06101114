/*
 * The registry of open engines: the one piece of process-wide mutable state
 * in the library, and deliberately so.
 *
 * Sharing is the point of td_engine_open: two FFmpeg filter instances naming
 * the same 30 GB of weights must get one copy in memory. Those instances are
 * created independently by the filtergraph parser (even in different graphs,
 * e.g. two -filter_complex chains or two lavfi inputs); libavfilter gives them
 * no common owner object through which a caller-owned registry could be
 * passed. A registry object owned by the caller would therefore make sharing
 * impossible for the library's main user. The state is kept minimal: a list
 * of open engines keyed by their canonical files, LoRAs and device, guarded by a
 * statically initialised mutex (no init-order or teardown question), and it
 * is empty whenever no engine is open.
 */
#include <string.h>

#include "engine.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static td_engine *registry_head;

void td_registry_lock(void)
{
    pthread_mutex_lock(&registry_lock);
}

void td_registry_unlock(void)
{
    pthread_mutex_unlock(&registry_lock);
}

td_engine *td_registry_find(const td_model_files *files, const char *device)
{
    for (td_engine *e = registry_head; e; e = e->next)
        if (!strcmp(e->device, device) && td_model_files_equal(&e->files, files))
            return e;
    return NULL;
}

void td_registry_add(td_engine *eng)
{
    eng->next = registry_head;
    registry_head = eng;
}

void td_registry_remove(td_engine *eng)
{
    for (td_engine **p = &registry_head; *p; p = &(*p)->next)
        if (*p == eng) {
            *p = eng->next;
            return;
        }
}
