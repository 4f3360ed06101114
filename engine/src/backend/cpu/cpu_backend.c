/*
 * The CPU backend's table and its memory: an activation arena (alloc, mark,
 * reset), weights used in place (upload is a view), and one growable tile
 * scratch shared by the ops (a backend runs one op at a time).
 *
 * Freed tensors from KEEP_MIN bytes on keep their blocks for a tensor_new
 * of the same size: the VAE decoder makes the same activations layer
 * after layer and chunk after chunk, and a fresh block that large is
 * fresh pages the kernel must zero (17 % of a 480p decode went to page
 * faults and zeroing, bench/NOTES.md). The kept blocks and the live
 * tensors together never hold more than the live tensors did at their
 * most since peak_reset (which frees them), so keeping adds nothing to
 * the peak the backend reports.
 */
#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "sla.h"

void *td_cpu_alloc(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    void *p;
    if (bytes < 2 * huge)
        return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    p = aligned_alloc(huge, (bytes + huge - 1) & ~(huge - 1));
#ifdef MADV_HUGEPAGE
    /* advice only: without it (or where refused) the pages are 4 KB */
    if (p)
        madvise(p, (bytes + huge - 1) & ~(huge - 1), MADV_HUGEPAGE);
#endif
    return p;
}

void td_cpu_blas_serial(void)
{
    openblas_set_num_threads(1);
}

/* What the backend holds now (the peak op). The weights are views of
 * mapped files, which a job pages in: they count from their upload on,
 * including after a low-memory release unmaps them, since a view's
 * tensor_free cannot be told from another view's. */
static void note_live(td_cpu *c)
{
    td_peak_note(&c->peak, c->uploaded + __atomic_load_n(&c->heap_live, __ATOMIC_RELAXED) + c->arena.used +
                               c->scratch_floats * sizeof(float));
}

float *td_cpu_scratch(td_backend *be, size_t n)
{
    td_cpu *c = td_cpu_of(be);
    if (n > c->scratch_floats) {
        float *p;
        if (n > SIZE_MAX / sizeof(float)) {
            td_fail(be->ctx, TD_ENOMEM, "cpu backend: scratch of %zu floats is too large", n);
            return NULL;
        }
        free(c->scratch);
        c->scratch_floats = 0;
        p = td_cpu_alloc(n * sizeof(float));
        if (!p) {
            c->scratch = NULL;
            td_fail(be->ctx, TD_ENOMEM, "cpu backend: cannot allocate %zu bytes of tile scratch",
                    n * sizeof(float));
            return NULL;
        }
        c->scratch = p;
        c->scratch_floats = n;
        note_live(c);
    }
    return c->scratch;
}

void *td_cpu_scratch_bytes(td_backend *be, size_t bytes)
{
    return td_cpu_scratch(be, td_cpu_scratch_size(bytes) / sizeof(float));
}

/* Each tensor's bytes are kept in the 64 bytes before its data, so
 * tensor_free takes off what tensor_new added whatever became of the
 * tensor's shape. */
#define CPU_HEADER 64

/* AddressSanitizer finds a use of a freed tensor only while its block
 * stays freed: an ASan build keeps none. */
#if defined(__SANITIZE_ADDRESS__)
#define KEEP_MIN SIZE_MAX
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEEP_MIN SIZE_MAX
#endif
#endif
#ifndef KEEP_MIN
#define KEEP_MIN ((size_t)4 << 20)
#endif

/* Kept block i, out of the list. */
static void *take_kept(td_cpu *c, int i)
{
    void *base = c->kept[i];
    c->nkept--;
    memmove(&c->kept[i], &c->kept[i + 1], sizeof(c->kept[0]) * (size_t)(c->nkept - i));
    memmove(&c->kept_bytes[i], &c->kept_bytes[i + 1], sizeof(c->kept_bytes[0]) * (size_t)(c->nkept - i));
    return base;
}

/* A block for a tensor of bytes: a kept one of that size, else a new one
 * once the kept blocks leave room for it under the live tensors' peak
 * (oldest dropped first). */
static unsigned char *block_for(td_cpu *c, size_t bytes)
{
    size_t live = __atomic_load_n(&c->heap_live, __ATOMIC_RELAXED) + bytes;
    size_t cap = c->heap_peak > live ? c->heap_peak : live;

    for (int i = 0; i < c->nkept; i++)
        if (c->kept_bytes[i] == bytes)
            return take_kept(c, i);
    while (c->nkept > 0 && live + td_cpu_kept_bytes(c) > cap)
        free(take_kept(c, 0));
    return td_cpu_alloc(CPU_HEADER + bytes);
}

/* Every kept block freed. */
static void drop_kept(td_cpu *c)
{
    while (c->nkept > 0)
        free(take_kept(c, 0));
}

static size_t cpu_peak(td_backend *be)
{
    return __atomic_load_n(&td_cpu_of(be)->peak, __ATOMIC_RELAXED);
}

static void cpu_trim(td_backend *be)
{
    td_cpu *c = td_cpu_of(be);
    free(c->scratch);
    c->scratch = NULL;
    c->scratch_floats = 0;
    drop_kept(c);
}

static void cpu_peak_reset(td_backend *be)
{
    td_cpu *c = td_cpu_of(be);
    cpu_trim(be);
    c->heap_peak = __atomic_load_n(&c->heap_live, __ATOMIC_RELAXED);
    __atomic_store_n(&c->peak, 0, __ATOMIC_RELAXED);
    note_live(c);
}

static size_t cpu_workspace(td_backend *be, td_op op, const td_tensor *a, const td_tensor *b,
                            const td_tensor *y, const td_conv3d_params *p)
{
    switch (op) {
    case TD_OP_LINEAR:
        return td_cpu_linear_workspace(be, a, b);
    case TD_OP_LINEAR_W8A8:
        return td_cpu_linear_w8a8_workspace(be, a, b);
    case TD_OP_ATTENTION:
        return td_cpu_attention_workspace(be, a, b, y);
    case TD_OP_SLA:
        return td_cpu_sla_workspace(be, a);
    case TD_OP_CONV3D:
        return td_cpu_conv3d_workspace(be, a, b, y, p);
    }
    return 0;
}

static int cpu_alloc(td_backend *be, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape)
{
    TD_TRY(td_arena_tensor(be->ctx, &td_cpu_of(be)->arena, t, dtype, ndim, shape));
    note_live(td_cpu_of(be));
    return 0;
}

static size_t cpu_mark(td_backend *be)
{
    return td_arena_mark(&td_cpu_of(be)->arena);
}

static void cpu_reset(td_backend *be, size_t mark)
{
    td_arena_reset(&td_cpu_of(be)->arena, mark);
}

static int cpu_upload(td_backend *be, const td_tensor *host, td_tensor *dev)
{
    *dev = *host;
    dev->owns = 0;
    td_cpu_of(be)->uploaded += td_nbytes(host);
    note_live(td_cpu_of(be));
    return 0;
}

/* The weights are views of mapped files, counted once they are uploaded:
 * the job estimate counts them as held (a job pages them all in). */
static int cpu_available(td_backend *be, size_t *bytes)
{
    (void)be;
    *bytes = td_host_memory_available();
    return 0;
}

static size_t cpu_uploaded(td_backend *be)
{
    return td_cpu_of(be)->uploaded;
}

static int cpu_tensor_new(td_backend *be, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape)
{
    td_cpu *c = td_cpu_of(be);
    int64_t n = td_checked_numel(ndim, shape);
    size_t bytes;
    unsigned char *base;
    if (ndim < 0 || ndim > TD_MAX_DIMS || n < 0 || (uint64_t)n > SIZE_MAX / 64)
        return td_fail(be->ctx, TD_EINVAL, "cpu backend: a tensor of %d dims overflows", ndim);
    *t = td_view(NULL, dtype, ndim, shape);
    bytes = ((size_t)n * td_dtype_size(dtype) + 63) & ~(size_t)63;
    base = bytes >= KEEP_MIN ? block_for(c, bytes) : td_cpu_alloc(CPU_HEADER + bytes);
    if (!base)
        return td_fail(be->ctx, TD_ENOMEM, "cpu backend: cannot allocate %zu bytes for a tensor", bytes);
    memcpy(base, &bytes, sizeof(bytes));
    t->data = base + CPU_HEADER;
    t->owns = TD_OWNS_BACKEND;
    if ((bytes = __atomic_add_fetch(&c->heap_live, bytes, __ATOMIC_RELAXED)) > c->heap_peak)
        c->heap_peak = bytes;
    note_live(c);
    return 0;
}

static void cpu_tensor_free(td_backend *be, td_tensor *t)
{
    if (t->owns == TD_OWNS_BACKEND) {
        td_cpu *c = td_cpu_of(be);
        unsigned char *base = (unsigned char *)t->data - CPU_HEADER;
        size_t bytes;
        memcpy(&bytes, base, sizeof(bytes));
        __atomic_sub_fetch(&c->heap_live, bytes, __ATOMIC_RELAXED);
        if (bytes < KEEP_MIN) {
            free(base);
        } else {
            if (c->nkept == TD_CPU_KEEP)
                free(take_kept(c, 0));
            c->kept[c->nkept] = base;
            c->kept_bytes[c->nkept++] = bytes;
        }
    }
    if (t->owns != TD_OWNS_HEAP)
        *t = (td_tensor){ 0 };
}

static void cpu_destroy(td_backend *be)
{
    td_cpu *c = td_cpu_of(be);
    if (c) {
        td_arena_free(&c->arena);
        free(c->scratch);
        drop_kept(c);
        free(c);
    }
    free(be);
}

static const td_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .available = cpu_available,
    .uploaded = cpu_uploaded,
    .peak = cpu_peak,
    .peak_reset = cpu_peak_reset,
    .trim = cpu_trim,
    .workspace = cpu_workspace,
    .alloc = cpu_alloc,
    .mark = cpu_mark,
    .reset = cpu_reset,
    .tensor_new = cpu_tensor_new,
    .tensor_free = cpu_tensor_free,
    .upload = cpu_upload,
    .write = td_cpu_write,
    .read = td_cpu_read,
    .copy = td_cpu_copy,
    .fill = td_cpu_fill,
    .linear = td_cpu_linear,
    .linear_gelu_tanh = td_cpu_linear_gelu_tanh,
    .linear_w8a8 = td_cpu_linear_w8a8,
    .matmul = td_cpu_matmul,
    .layernorm = td_cpu_layernorm,
    .rmsnorm = td_cpu_rmsnorm,
    .channel_rmsnorm = td_cpu_channel_rmsnorm,
    .gelu_tanh = td_cpu_gelu_tanh,
    .silu = td_cpu_silu,
    .softmax = td_cpu_softmax,
    .add = td_cpu_add,
    .mul = td_cpu_mul,
    .modulate = td_cpu_modulate,
    .add_gated = td_cpu_add_gated,
    .clamp = td_cpu_clamp,
    .scale_shift = td_cpu_scale_shift,
    .embed = td_cpu_embed,
    .rel_pos_bias = td_cpu_rel_pos_bias,
    .rope = td_cpu_rope,
    .attention = td_cpu_attention,
    .conv3d = td_cpu_conv3d,
    .upsample_nearest = td_cpu_upsample_nearest,
    .sla_attention = td_cpu_sla_attention,
};

/* The cap on the paths' instruction sets (isa.h): TURBODIFF_CPU_MAX_ISA,
 * unset or empty for none. */
static int isa_cap(td_ctx *ctx, td_isa *cap)
{
    static const char *const names[] = { "generic", "avx2", "avx512", "amx" };
    const char *v = getenv("TURBODIFF_CPU_MAX_ISA");

    *cap = TD_ISA_AMX;
    if (!v || !*v)
        return 0;
    for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
        if (!strcmp(v, names[i])) {
            *cap = (td_isa)i;
            return 0;
        }
    return td_fail(ctx, TD_EINVAL, "cpu backend: TURBODIFF_CPU_MAX_ISA=%s is not an instruction set it "
                   "knows: use generic, avx2, avx512 or amx, or unset it for the fastest this CPU runs", v);
}

int td_backend_cpu_create(td_ctx *ctx, size_t arena_bytes, td_backend **out)
{
    td_backend *be;
    td_cpu *c;
    td_isa cap;
    int rc;

    *out = NULL;
    TD_TRY(isa_cap(ctx, &cap));
    be = calloc(1, sizeof(*be));
    c = calloc(1, sizeof(*c));
    if (!be || !c) {
        free(be);
        free(c);
        return td_fail(ctx, TD_ENOMEM, "cpu backend: cannot allocate its state");
    }
    rc = td_arena_init(ctx, &c->arena, arena_bytes);
    if (rc < 0) {
        free(be);
        free(c);
        return rc;
    }
    be->ops = &cpu_ops;
    be->ctx = ctx;
    be->act = TD_F32;
    be->priv = c;
    c->nthreads = td_pool_threads(ctx->pool);
    c->w8a8_path = td_cpu_w8a8_best(cap);
    c->att_path = td_cpu_att_best(cap);
    c->lin_path = td_cpu_lin_best(cap);
    c->conv_path = td_cpu_conv_best(cap);
    *out = be;
    return 0;
}

void td_backend_destroy(td_backend **be)
{
    if (*be) {
        (*be)->ops->destroy(*be);
        *be = NULL;
    }
}
