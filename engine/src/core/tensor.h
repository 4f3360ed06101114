/*
 * td_tensor: a typed, strided view of memory. It owns its data only when
 * created by td_tensor_new (owns = TD_OWNS_HEAP) or by a backend's
 * tensor_new / upload (owns = TD_OWNS_BACKEND: backend memory, which host
 * code never touches and only that backend's tensor_free releases); views,
 * slices, arena tensors and tensors over a mapped weight file share memory
 * owned elsewhere (owns = 0).
 * Strides are in elements. Models run batch 1, so activations are at most
 * 5-D ([C, T, H, W] for video, [S, H, D] for attention); weight files may
 * hold up to TD_MAX_DIMS.
 */
#ifndef TD_CORE_TENSOR_H
#define TD_CORE_TENSOR_H

#include <stdint.h>
#include <stddef.h>

#include "ctx.h"
#include "dtype.h"

#define TD_MAX_DIMS 8

enum { TD_OWNS_HEAP = 1, TD_OWNS_BACKEND = 2 };

typedef struct td_tensor {
    td_dtype dtype;
    int ndim;
    int64_t shape[TD_MAX_DIMS];
    int64_t stride[TD_MAX_DIMS];
    void *data;
    int owns;
} td_tensor;

/* Element count; 1 for a 0-d tensor. */
int64_t td_numel(const td_tensor *t);
size_t td_nbytes(const td_tensor *t);
int td_is_contiguous(const td_tensor *t);

/* Fill in a contiguous view over existing memory. */
td_tensor td_view(void *data, td_dtype dtype, int ndim, const int64_t *shape);
/* Convenience for small ranks: td_view2(data, TD_F32, rows, cols) etc. */
td_tensor td_view1(void *data, td_dtype dtype, int64_t d0);
td_tensor td_view2(void *data, td_dtype dtype, int64_t d0, int64_t d1);
td_tensor td_view3(void *data, td_dtype dtype, int64_t d0, int64_t d1, int64_t d2);
td_tensor td_view4(void *data, td_dtype dtype, int64_t d0, int64_t d1, int64_t d2, int64_t d3);

/* Heap tensor, zero-initialised, owns = TD_OWNS_HEAP. */
int td_tensor_new(td_ctx *ctx, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape);
void td_tensor_free(td_tensor *t);

/* Views without copies. Each checks its arguments and reports TD_ESHAPE. */
int td_tensor_reshape(td_ctx *ctx, const td_tensor *t, int ndim, const int64_t *shape, td_tensor *out);
int td_tensor_slice(td_ctx *ctx, const td_tensor *t, int dim, int64_t start, int64_t len, td_tensor *out);
int td_tensor_permute(td_ctx *ctx, const td_tensor *t, const int *perm, td_tensor *out);

/* Copy any-strided src into contiguous-or-strided dst of the same shape,
 * converting dtype through f32 where they differ. */
int td_tensor_copy(td_ctx *ctx, td_tensor *dst, const td_tensor *src);

/* "name [2,3,4] f32" into buf, for error messages. */
const char *td_shape_str(const td_tensor *t, char *buf, size_t size);

/* Multiply non-negative dims with overflow check; -1 on overflow. */
int64_t td_checked_numel(int ndim, const int64_t *shape);

#endif
