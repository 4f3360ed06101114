#include "models.h"

#include <stdlib.h>

#include "engine.h"

int td_models_load(td_ctx *ctx, const td_model_files *files, td_models **out)
{
    td_models *m = calloc(1, sizeof(*m));
    td_dit_opts opts = { 0 };
    int rc;

    *out = NULL;
    if (!m)
        return td_fail(ctx, TD_ENOMEM, "out of memory loading the models");
    rc = td_backend_cpu_create(ctx, 0, &m->be);
    if (rc == 0)
        rc = td_weights_open(ctx, files->dit, &m->w_dit);
    if (rc == 0)
        rc = td_dit_load(ctx, m->w_dit, &opts, &m->dit);
    if (rc == 0)
        rc = td_weights_open(ctx, files->vae, &m->w_vae);
    if (rc == 0)
        rc = td_vae_load(m->be, m->w_vae, &m->vae);
    if (rc < 0) {
        td_models_free(&m);
        return rc;
    }
    *out = m;
    return 0;
}

void td_models_free(td_models **pm)
{
    td_models *m = *pm;
    if (!m)
        return;
    td_vae_free(&m->vae);
    td_dit_free(&m->dit);
    td_weights_close(&m->w_vae);
    td_weights_close(&m->w_dit);
    td_backend_destroy(&m->be);
    free(m);
    *pm = NULL;
}
