/*
 * td_ctx: what every internal call needs besides its arguments: where errors
 * go, where log lines go, and the thread pool. One per engine (or per tool
 * invocation); nothing in the library is global.
 */
#ifndef TD_CORE_CTX_H
#define TD_CORE_CTX_H

#include <stdarg.h>
#include "turbodiff.h"

typedef struct td_pool td_pool;

typedef struct td_ctx {
    int err;                 /* code of the last error, 0 if none */
    char errmsg[512];
    td_log_fn log;
    void *log_opaque;
    int log_level;
    td_pool *pool;           /* may be NULL: everything runs on the caller */
} td_ctx;

/* A fresh context: no error, no log callback, level info, no pool. */
void td_ctx_init(td_ctx *ctx);

/* Record an error and return its code, so call sites read
 *     return td_fail(ctx, TD_EFORMAT, "%s: header length %llu past end", ...);
 * The first error wins until td_ctx_clear: the root cause is what users see. */
int td_fail(td_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void td_ctx_clear(td_ctx *ctx);

void td_log(td_ctx *ctx, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Early-return helper for functions that return int error codes. */
#define TD_TRY(expr) do { int td_try_rc_ = (expr); if (td_try_rc_ < 0) return td_try_rc_; } while (0)

#endif
