/*
 * Text embedding cache: the same prompt with the same encoder is encoded
 * once per engine (a small in-memory LRU), and optionally once per machine
 * (a cache directory). Keys are SHA-256 of the encoder identity and the
 * prompt; the identity is the encoder file's absolute path, size and mtime,
 * so a replaced file misses instead of serving stale embeddings.
 *
 * A disk entry <dir>/<key hex>.tdemb holds a magic, the key, rows, cols, the
 * f32 rows and a SHA-256 of all of that; it is written to a temporary file
 * and renamed, so readers never see half an entry, and a corrupt, truncated
 * or foreign entry is ignored (a miss; it is overwritten on the next put).
 * Disk failures never fail an encode: they are logged and the cache carries
 * on in memory.
 */
#ifndef TD_TEXT_CACHE_H
#define TD_TEXT_CACHE_H

#include "core/ctx.h"
#include "core/tensor.h"

typedef struct td_text_cache td_text_cache;

/* "absolute path|size|mtime_ns" of an encoder file into buf; TD_EIO when it cannot be
 * stat'ed, TD_EINVAL when buf is too small. */
int td_text_encoder_identity(td_ctx *ctx, const char *path, char *buf, size_t size);

/* capacity >= 1 embeddings in memory; dir NULL for memory only, else an
 * existing directory. */
int td_text_cache_create(td_ctx *ctx, int capacity, const char *dir, td_text_cache **out);
void td_text_cache_destroy(td_text_cache **c);

/* 1 and a new owned f32 copy in out on a hit (a disk hit is kept in memory
 * too), 0 on a miss, < 0 on an allocation failure. */
int td_text_cache_get(td_ctx *ctx, td_text_cache *c, const char *encoder_id, const char *prompt,
                      td_tensor *out);
/* Keep a copy of emb (f32, 2-D, contiguous) under the key, evicting the
 * least recently used entry when full, and write it to the directory. */
int td_text_cache_put(td_ctx *ctx, td_text_cache *c, const char *encoder_id, const char *prompt,
                      const td_tensor *emb);

#endif
