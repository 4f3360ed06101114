/*
 * Table lookups driven by host index arrays on the CUDA backend: token
 * embedding rows and T5's relative position bias. The indices are checked
 * on the host (op_check.c) before they cross, so a kernel never reads past
 * its table; they cross in one copy to pool memory, freed in stream order.
 */
#include "cuda_internal.h"

static int check_table(td_backend *be, const char *op, const td_tensor *table)
{
    char s[96];
    if (!table || (!table->data && td_numel(table) > 0))
        return td_fail(be->ctx, TD_EINVAL, "%s: table is missing", op);
    if ((table->dtype != TD_F32 && table->dtype != TD_BF16 && table->dtype != TD_F16) ||
        !td_is_contiguous(table))
        return td_fail(be->ctx, TD_EINVAL, "%s: table %s must be a contiguous float tensor", op,
                       td_shape_str(table, s, sizeof(s)));
    return 0;
}

/* n host indices into pool memory on the stream (pageable sources are
 * staged by the copy itself, so the host array is free again on return). */
static int indices_to_device(td_backend *be, const char *op, const int32_t *idx, int64_t n, int32_t **dev)
{
    TD_TRY(td_cuda_pool_alloc(be, (void **)dev, sizeof(int32_t) * (size_t)n, op));
    return td_cuda_check(be, cudaMemcpyAsync(*dev, idx, sizeof(int32_t) * (size_t)n, cudaMemcpyHostToDevice,
                                             td_cuda_of(be)->stream), op);
}

int td_cuda_embed(td_backend *be, const td_tensor *table, const int32_t *ids, int64_t n, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    static const char op[] = "embed";
    int32_t *dev = NULL;
    int rc;

    TD_TRY(check_table(be, op, table));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_embed(be->ctx, table, ids, n, y));
    if (n == 0 || table->shape[1] == 0)
        return 0;
    rc = indices_to_device(be, op, ids, n, &dev);
    if (rc == 0)
        rc = td_cuda_check(be, tdk_embed(td_cuda_of(be)->stream, td_cuda_vec(table), dev, n, table->shape[1],
                                         y->data), op);
    td_cuda_pool_free(be, dev);
    return rc;
}

int td_cuda_rel_pos_bias(td_backend *be, const td_tensor *table, const int32_t *bucket, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    static const char op[] = "rel_pos_bias";
    int32_t *dev = NULL;
    int64_t heads, n;
    int rc;

    TD_TRY(check_table(be, op, table));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_rel_pos_bias(be->ctx, table, bucket, y));
    heads = y->shape[0];
    n = y->shape[1];
    if (heads == 0)
        return 0;
    rc = indices_to_device(be, op, bucket, 2 * n - 1, &dev);
    if (rc == 0)
        rc = td_cuda_check(be, tdk_rel_pos_bias(td_cuda_of(be)->stream, td_cuda_vec(table), dev, heads, n,
                                                y->data), op);
    td_cuda_pool_free(be, dev);
    return rc;
}
