#include "ctx.h"

#include <stdio.h>
#include <string.h>

void td_ctx_init(td_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->log_level = TD_LOG_INFO;
}

int td_fail(td_ctx *ctx, int code, const char *fmt, ...)
{
    if (ctx && !ctx->err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->errmsg, sizeof(ctx->errmsg), fmt, ap);
        va_end(ap);
        ctx->err = code;
    }
    return code;
}

void td_ctx_clear(td_ctx *ctx)
{
    ctx->err = 0;
    ctx->errmsg[0] = '\0';
}

void td_log(td_ctx *ctx, int level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    if (!ctx || !ctx->log || level > ctx->log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    ctx->log(ctx->log_opaque, level, line);
}

unsigned td_version(void)
{
    return TD_VERSION_INT;
}

const char *td_strerror(int err)
{
    switch (err) {
    case TD_OK:           return "success";
    case TD_EINVAL:       return "invalid argument";
    case TD_ENOMEM:       return "out of memory";
    case TD_EIO:          return "I/O error";
    case TD_EFORMAT:      return "malformed file";
    case TD_EUNSUPPORTED: return "unsupported";
    case TD_ECANCELLED:   return "cancelled";
    case TD_ENOTFOUND:    return "not found";
    case TD_ESHAPE:       return "shape mismatch";
    case TD_EDEVICE:      return "device error";
    case TD_EUNSAFE:      return "refused unsafe content";
    default:              return "unknown error";
    }
}
