/*
 * What the format parsers (safetensors.c, pth.c) see of the weight store:
 * they append tensors in file order and hand over any memory the tensors
 * point into that is not the file itself (inflated .pth records).
 */
#ifndef TD_IO_WEIGHTS_INTERNAL_H
#define TD_IO_WEIGHTS_INTERNAL_H

#include "mmap_file.h"
#include "weights.h"

typedef struct td_wentry {
    char *name;          /* as stored */
    const char *canon;   /* points into name, past the wrapper prefixes */
    td_tensor t;
} td_wentry;

struct td_weights {
    char *path;
    td_bytes file;
    td_wentry *e;
    int n, cap;
    void **owned;
    int n_owned, cap_owned;
    td_wentry **by_name;     /* sorted by stored name */
    td_wentry **by_canon;    /* sorted by canonical name, then file order */
};

/* Append a tensor view named by name[0..len). */
int td_weights_add(td_ctx *ctx, td_weights *w, const char *name, size_t len,
                   const td_tensor *t);
/* The store frees buf when it closes (also when this call fails). */
int td_weights_adopt(td_ctx *ctx, td_weights *w, void *buf);

/* Open weights held in memory; label names them in messages. With
 * TD_BYTES_HEAP the store takes ownership of data (and frees it on
 * failure too); with TD_BYTES_NONE the caller keeps data alive. */
int td_weights_open_bytes(td_ctx *ctx, const char *label, const void *data,
                          size_t size, td_bytes_kind kind, td_weights **out);

/* The parsers, given the whole file. */
int td_safetensors_parse(td_ctx *ctx, td_weights *w, const uint8_t *data, size_t size);
int td_pth_parse(td_ctx *ctx, td_weights *w, const uint8_t *data, size_t size);

#endif
