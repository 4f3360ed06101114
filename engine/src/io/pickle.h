/*
 * A restricted unpickler for torch.save's data.pkl. It understands only the
 * opcodes and globals a state dict needs and executes nothing: the few
 * callables it accepts (OrderedDict, torch._utils._rebuild_tensor_v2/v3,
 * _rebuild_parameter[_with_state]) are interpreted as data constructors,
 * storages become descriptions of zip records, tensors become shape/stride/
 * offset descriptions. Any other global is refused with TD_EUNSAFE.
 * The machine is a loop over an explicit stack: no recursion, so nesting
 * depth cannot exhaust the C stack.
 */
#ifndef TD_IO_PICKLE_H
#define TD_IO_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "core/tensor.h"

typedef enum td_pk_kind {
    TD_PK_NONE, TD_PK_BOOL, TD_PK_INT, TD_PK_FLOAT, TD_PK_STR,
    TD_PK_TUPLE, TD_PK_LIST, TD_PK_DICT, TD_PK_SET,
    TD_PK_GLOBAL, TD_PK_STORAGE, TD_PK_TENSOR,
} td_pk_kind;

typedef enum td_pk_global {
    TD_PKG_ORDERED_DICT,
    TD_PKG_REBUILD_TENSOR_V2,
    TD_PKG_REBUILD_TENSOR_V3,
    TD_PKG_REBUILD_PARAMETER,
    TD_PKG_REBUILD_PARAMETER_WITH_STATE,
    TD_PKG_TYPED_STORAGE,     /* torch.FloatStorage etc.: dtype set */
    TD_PKG_UNTYPED_STORAGE,   /* torch.storage.UntypedStorage: bytes */
    TD_PKG_DTYPE,             /* torch.float32 etc.: dtype set */
} td_pk_global;

typedef struct td_pk td_pk;

typedef struct td_pk_storage {
    const char *key;          /* record name under data/, into the pickle */
    size_t key_len;
    td_dtype dtype;           /* TD_U8 for untyped storages */
    uint64_t numel;           /* elements of dtype */
} td_pk_storage;

typedef struct td_pk_tensor {
    const td_pk *storage;
    td_dtype dtype;
    int ndim;
    int64_t offset;           /* in elements of dtype */
    int64_t shape[TD_MAX_DIMS];
    int64_t stride[TD_MAX_DIMS];
} td_pk_tensor;

struct td_pk {
    td_pk_kind kind;
    int visited;              /* for the caller's graph walks */
    int64_t i;                /* BOOL, INT */
    double f;
    const char *s;            /* STR: into the pickle bytes, not NUL-terminated */
    size_t len;
    td_pk **items;            /* TUPLE, LIST, SET; DICT as key, value pairs */
    size_t n, cap;
    td_pk_global g;           /* GLOBAL */
    td_dtype dtype;           /* GLOBAL typed storage or dtype */
    td_pk_storage st;         /* STORAGE */
    td_pk_tensor *t;          /* TENSOR */
};

typedef struct td_pickle {
    const char *label;        /* file name for messages */
    td_pk **all;              /* every value, to free them in one pass */
    size_t n_all, cap_all;
    td_pk *root;
} td_pickle;

int td_pickle_load(td_ctx *ctx, const char *label, const uint8_t *data, size_t size,
                   td_pickle *out);
void td_pickle_free(td_pickle *p);

#endif
