/*
 * Weight store: name -> tensor view over a memory-mapped weight file.
 * Opens safetensors and PyTorch zip .pth files (format chosen by content,
 * never by file name). Tensors stay in their stored dtype; nothing is copied
 * except where a .pth storage is deflate-compressed (then it is inflated once
 * into memory the store owns) or where a writer left a tensor misaligned for
 * its dtype (then it is copied once, so every tensor's data is aligned).
 *
 * Names are kept as stored (for `turbodiff inspect`) and also in canonical
 * form, with checkpoint-wrapper prefixes ("model.diffusion_model.",
 * "state_dict.", "module.", "model.", "net.") stripped from the front
 * repeatedly, which is what models look up, so one key map serves the Wan,
 * ComfyUI and TurboDiffusion layouts. A .pth holding nested dicts is
 * flattened into dotted names ({"model": {"a": t}} -> "model.a").
 */
#ifndef TD_IO_WEIGHTS_H
#define TD_IO_WEIGHTS_H

#include "core/ctx.h"
#include "core/tensor.h"

typedef struct td_weights td_weights;

int td_weights_open(td_ctx *ctx, const char *path, td_weights **out);
void td_weights_close(td_weights **w);

const char *td_weights_path(const td_weights *w);
int td_weights_count(const td_weights *w);
/* The i-th tensor in file order: stored name and view. */
const char *td_weights_name(const td_weights *w, int i);
const td_tensor *td_weights_tensor(const td_weights *w, int i);

/* Look up by canonical (prefix-stripped) or stored name; NULL if absent. */
const td_tensor *td_weights_find(const td_weights *w, const char *name);

/* Look up and check: TD_ENOTFOUND naming the file and tensor when absent;
 * with ndim >= 0, TD_ESHAPE naming expected and found shapes unless they
 * match (a -1 in shape matches any size). */
int td_weights_get(td_ctx *ctx, const td_weights *w, const char *name,
                   int ndim, const int64_t *shape, td_tensor *out);

/* printf-style name, for per-layer keys ("blocks.%d.self_attn.q.weight"). */
int td_weights_getf(td_ctx *ctx, const td_weights *w, td_tensor *out,
                    int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Has any tensor whose canonical name starts with prefix. */
int td_weights_has_prefix(const td_weights *w, const char *prefix);

#endif
