/*
 * Device strings to backends (td_backend_create_for_device): every spelling
 * that is not auto/cpu/cuda/cuda:N/cudaN is TD_EINVAL naming the value; "cuda" is
 * TD_EUNSUPPORTED in a build without CUDA and TD_EDEVICE where no device is
 * present; "cpu" and "auto" always give a backend.
 */
#include <string.h>

#include "backend/backend.h"
#include "check.h"

#define ARENA (1u << 20)

static void expect_fail(td_ctx *ctx, const char *dev, int code, const char *needle)
{
    td_backend *be = (td_backend *)1;
    int rc;
    td_ctx_clear(ctx);
    rc = td_backend_create_for_device(ctx, dev, ARENA, &be);
    CHECK(rc == code, "'%s': rc %d, expected %d (%s)", dev, rc, code, ctx->errmsg);
    CHECK(be == NULL, "'%s': no backend on failure", dev);
    CHECK(strstr(ctx->errmsg, needle) != NULL, "'%s': message '%s' lacks '%s'", dev, ctx->errmsg, needle);
    td_backend_destroy(&be);
}

static void expect_ok(td_ctx *ctx, const char *dev, const char *name)
{
    td_backend *be = NULL;
    int rc;
    td_ctx_clear(ctx);
    rc = td_backend_create_for_device(ctx, dev, ARENA, &be);
    CHECK(rc == 0 && be, "'%s': %s", dev ? dev : "(null)", ctx->errmsg);
    if (be && name)
        CHECK(strcmp(be->ops->name, name) == 0, "'%s' gave %s, expected %s", dev, be->ops->name, name);
    td_backend_destroy(&be);
}

int main(void)
{
    static const char *bad[] = { "gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "cuda:+1", "cuda:1x",
                                 "cuda:99999", "cuda99999", "cudax", "cuda:0x", "cuda-1", "auto ", " cpu", "cuda:1:2" };
    td_ctx ctx;
    td_ctx_init(&ctx);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_fail(&ctx, bad[i], TD_EINVAL, bad[i]);
    expect_ok(&ctx, "cpu", "cpu");
    expect_ok(&ctx, "auto", NULL);
    expect_ok(&ctx, "", NULL);
    expect_ok(&ctx, NULL, NULL);
#ifdef TD_HAVE_CUDA
    if (td_cuda_device_count() == 0) {
        expect_fail(&ctx, "cuda", TD_EDEVICE, "no CUDA device is present");
        expect_fail(&ctx, "cuda:1", TD_EDEVICE, "no CUDA device is present");
        expect_fail(&ctx, "cuda1", TD_EDEVICE, "no CUDA device is present");
        expect_ok(&ctx, "auto", "cpu");
    } else {
        expect_ok(&ctx, "cuda", "cuda");
        expect_ok(&ctx, "cuda0", "cuda");
        expect_ok(&ctx, "auto", "cuda");
        expect_fail(&ctx, "cuda:4095", TD_EINVAL, "cuda:4095");
    }
#else
    expect_fail(&ctx, "cuda", TD_EUNSUPPORTED, "built without CUDA");
    expect_fail(&ctx, "cuda:0", TD_EUNSUPPORTED, "built without CUDA");
    expect_fail(&ctx, "cuda1", TD_EUNSUPPORTED, "built without CUDA");
    expect_ok(&ctx, "auto", "cpu");
#endif
    return check_summary();
}
