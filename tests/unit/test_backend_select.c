/*
 * Device strings to backends (td_backend_create_for_device): every spelling
 * that is not auto/cpu/cuda/cuda:N/cudaN is TD_EINVAL naming the value; "cuda" is
 * TD_EUNSUPPORTED in a build without CUDA and TD_EDEVICE where no device is
 * present; "cpu" and "auto" always give a backend. TURBODIFF_CPU_MAX_ISA
 * caps the CPU backend's op paths at the instruction set it names (each
 * path is the fastest the CPU runs within it) and any other value is
 * refused, naming it.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/cpu.h"
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

/* The path enums list their instruction sets oldest first (isa.h), so a
 * path within the cap is the first one the CPU runs, counting down from
 * the newest the cap allows. */
static void expect_cap(td_ctx *ctx, const char *value, td_isa cap)
{
    static const td_isa att_isa[] = { TD_ISA_GENERIC, TD_ISA_AVX2, TD_ISA_AVX512, TD_ISA_AMX };
    static const td_isa lin_isa[] = { TD_ISA_GENERIC, TD_ISA_AMX };
    static const td_isa conv_isa[] = { TD_ISA_GENERIC, TD_ISA_AVX512, TD_ISA_AMX };
    static const td_isa w8_isa[] = { TD_ISA_GENERIC, TD_ISA_AVX2, TD_ISA_AVX512 };
    td_backend *be = NULL;
    td_cpu *c;
    int want;

    setenv("TURBODIFF_CPU_MAX_ISA", value, 1);
    td_ctx_clear(ctx);
    CHECK(td_backend_create_for_device(ctx, "cpu", ARENA, &be) == 0 && be, "cap '%s': %s", value, ctx->errmsg);
    if (!be)
        return;
    c = td_cpu_of(be);
    for (want = 3; want > 0 && (att_isa[want] > cap || !td_cpu_att_supported((td_att_path)want)); want--)
        ;
    CHECK((int)c->att_path == want, "cap '%s': attention path %d, expected %d", value, c->att_path, want);
    for (want = 1; want > 0 && (lin_isa[want] > cap || !td_cpu_lin_supported((td_lin_path)want)); want--)
        ;
    CHECK((int)c->lin_path == want, "cap '%s': linear path %d, expected %d", value, c->lin_path, want);
    for (want = 2; want > 0 && (conv_isa[want] > cap || !td_cpu_conv_supported((td_conv_path)want)); want--)
        ;
    CHECK((int)c->conv_path == want, "cap '%s': conv3d path %d, expected %d", value, c->conv_path, want);
    for (want = 2; want > 0 && (w8_isa[want] > cap || !td_cpu_w8a8_supported((td_w8_path)want)); want--)
        ;
    CHECK((int)c->w8a8_path == want, "cap '%s': w8a8 path %d, expected %d", value, c->w8a8_path, want);
    td_backend_destroy(&be);
}

static void test_isa_cap(td_ctx *ctx)
{
    static const char *bad[] = { "AVX2", "sse4", "avx512 ", "avx-512", "native" };

    expect_cap(ctx, "generic", TD_ISA_GENERIC);
    expect_cap(ctx, "avx2", TD_ISA_AVX2);
    expect_cap(ctx, "avx512", TD_ISA_AVX512);
    expect_cap(ctx, "amx", TD_ISA_AMX);
    expect_cap(ctx, "", TD_ISA_AMX);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("TURBODIFF_CPU_MAX_ISA", bad[i], 1);
        expect_fail(ctx, "cpu", TD_EINVAL, "TURBODIFF_CPU_MAX_ISA=");
        CHECK(strstr(ctx->errmsg, bad[i]) != NULL, "'%s': message '%s' does not name it", bad[i], ctx->errmsg);
    }
    unsetenv("TURBODIFF_CPU_MAX_ISA");
    expect_cap(ctx, "amx", TD_ISA_AMX);
    unsetenv("TURBODIFF_CPU_MAX_ISA");
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
    test_isa_cap(&ctx);
    return check_summary();
}
