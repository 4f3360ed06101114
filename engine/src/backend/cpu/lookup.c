/*
 * Table lookups driven by host index arrays: token embedding rows and T5's
 * relative position bias. The indices are the only host data an op reads
 * besides write's source: they are the token ids entering the pipeline.
 */
#include <stdlib.h>

#include "cpu.h"

int td_cpu_embed(td_backend *be, const td_tensor *table, const int32_t *ids, int64_t n, td_tensor *y)
{
    int64_t d;
    size_t row;
    TD_TRY(td_cpu_check_weight(be, "embed", "table", table));
    TD_TRY(td_check_act(be, "embed", "y", y));
    TD_TRY(td_check_embed(be->ctx, table, ids, n, y));
    d = table->shape[1];
    row = (size_t)d * td_dtype_size(table->dtype);
    for (int64_t i = 0; i < n; i++)
        td_to_f32(table->dtype, (const char *)table->data + (size_t)ids[i] * row,
                  (float *)y->data + i * d, (size_t)d);
    return 0;
}

int td_cpu_rel_pos_bias(td_backend *be, const td_tensor *table, const int32_t *bucket, td_tensor *y)
{
    int64_t heads, n;
    float *owned;
    const float *t;
    TD_TRY(td_cpu_check_weight(be, "rel_pos_bias", "table", table));
    TD_TRY(td_check_act(be, "rel_pos_bias", "y", y));
    TD_TRY(td_check_rel_pos_bias(be->ctx, table, bucket, y));
    heads = y->shape[0];
    n = y->shape[1];
    if (!(t = td_cpu_vec_f32(be, table, &owned)))
        return TD_ENOMEM;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t i = 0; i < n; i++) {
            float *row = (float *)y->data + (h * n + i) * n;
            for (int64_t j = 0; j < n; j++)
                row[j] = t[bucket[j - i + n - 1] * heads + h];
        }
    free(owned);
    return 0;
}
