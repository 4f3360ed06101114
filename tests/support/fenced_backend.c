/*
 * The fenced backend (see fenced_backend.h). Memory: one PROT_NONE
 * reservation, an arena part (alloc/mark/reset, a stack of records) and a
 * heap part (tensor_new/upload, first fit over the gaps between live
 * records kept sorted by offset). Every allocation starts on its own page,
 * so opening one for an op opens nothing else. An op call: check each
 * tensor argument against the live records, open (mprotect READ|WRITE) the
 * allocations they lie in, run the CPU backend's op, close them again.
 * The bf16 variant also widens each bf16 activation argument into a
 * malloc'd f32 mirror of its layout around the CPU op and narrows the
 * outputs back.
 */
#include "fenced_backend.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FENCE_ARENA_DEFAULT ((size_t)256 << 20)
#define FENCE_HEAP_SPACE ((size_t)8 << 30)   /* address space only (MAP_NORESERVE) */
#define FENCE_MAX_ARGS 8

typedef struct fence_rec {
    size_t off, span;         /* page-aligned offset in the reservation, pages spanned */
    size_t bytes;             /* the tensor's exact size: arguments must end inside */
    td_tensor shape;          /* dtype and shape, for messages (data unused) */
    const char *origin;       /* "alloc", "tensor_new" or "upload" */
} fence_rec;

typedef struct fence_recs {
    fence_rec *v;
    size_t n, cap;
} fence_recs;

typedef struct fenced {
    td_backend *cpu;          /* the kernels (and their tile scratch) */
    unsigned char *base;
    size_t page, arena_size, size, arena_used;
    fence_recs arena;         /* a stack, by offset */
    fence_recs heap;          /* sorted by offset */
    const char *last_op;
    int in_op;
    size_t live, peak;        /* exact bytes of the live records, and their most */
    size_t uploaded;          /* bytes upload has placed (backend.h's memory) */
    struct fenced *next;      /* every live fenced backend, for the handler */
} fenced;

/* The one piece of process state: the SIGSEGV handler must find the fenced
 * backends from the faulting address, and restore the action it replaced. */
static struct {
    fenced *head;
    struct sigaction old;
} fence_registry;

static fenced *fence_of(td_backend *be) { return be->priv; }
static td_backend *inner(td_backend *be) { return fence_of(be)->cpu; }

/* --- the fault handler ------------------------------------------------- */

static const fence_rec *rec_at(const fence_recs *r, size_t off)
{
    for (size_t i = 0; i < r->n; i++)
        if (off >= r->v[i].off && off < r->v[i].off + r->v[i].span)
            return &r->v[i];
    return NULL;
}

static void report_fault(const fenced *f, size_t off)
{
    const fence_rec *r = rec_at(&f->arena, off);
    char msg[512], s[96];
    int n;
    if (!r)
        r = rec_at(&f->heap, off);
    if (r)
        n = snprintf(msg, sizeof(msg), "fenced backend: %s touched %s %s at byte offset %zu %s; last op: %s\n",
                     f->in_op ? "an op" : "host code", r->origin, td_shape_str(&r->shape, s, sizeof(s)),
                     off - r->off, f->in_op ? "outside its arguments" : "outside an op",
                     f->last_op ? f->last_op : "(none)");
    else
        n = snprintf(msg, sizeof(msg), "fenced backend: %s touched freed or never allocated backend "
                     "memory at reservation offset %zu; last op: %s\n", f->in_op ? "an op" : "host code",
                     off, f->last_op ? f->last_op : "(none)");
    if (n > 0 && write(STDERR_FILENO, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1) < 0)
        _exit(3);
    _exit(3);
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    const unsigned char *a = si->si_addr;
    (void)sig;
    (void)uc;
    for (const fenced *f = fence_registry.head; f; f = f->next)
        if (a >= f->base && a < f->base + f->size)
            report_fault(f, (size_t)(a - f->base));
    /* Not ours: put the previous action back; the access faults again into it. */
    sigaction(SIGSEGV, &fence_registry.old, NULL);
}

static void registry_add(fenced *f)
{
    if (!fence_registry.head) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &fence_registry.old);
    }
    f->next = fence_registry.head;
    fence_registry.head = f;
}

static void registry_remove(fenced *f)
{
    for (fenced **p = &fence_registry.head; *p; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            break;
        }
    if (!fence_registry.head)
        sigaction(SIGSEGV, &fence_registry.old, NULL);
}

/* --- allocations ------------------------------------------------------- */

static int recs_insert(td_ctx *ctx, fence_recs *r, size_t at, const fence_rec *rec)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        fence_rec *v = realloc(r->v, cap * sizeof(*v));
        if (!v)
            return td_fail(ctx, TD_ENOMEM, "fenced backend: cannot grow its allocation list");
        r->v = v;
        r->cap = cap;
    }
    memmove(r->v + at + 1, r->v + at, (r->n - at) * sizeof(*rec));
    r->v[at] = *rec;
    r->n++;
    return 0;
}

/* The live record whose tensor bytes hold [lo, hi), or NULL. */
static const fence_rec *rec_holding(const fence_recs *r, size_t lo, size_t hi)
{
    size_t a = 0, b = r->n;
    while (a < b) {   /* first record starting past lo */
        size_t m = (a + b) / 2;
        if (r->v[m].off <= lo)
            a = m + 1;
        else
            b = m;
    }
    if (a == 0 || hi > r->v[a - 1].off + r->v[a - 1].bytes)
        return NULL;
    return &r->v[a - 1];
}

static int protect(td_backend *be, size_t off, size_t span, int prot)
{
    fenced *f = fence_of(be);
    if (mprotect(f->base + off, span, prot) != 0)
        return td_fail(be->ctx, TD_ENOMEM, "fenced backend: mprotect of %zu bytes failed", span);
    return 0;
}

/* Fresh memory holds NaN in its float dtype (0xa5 bytes otherwise), so a
 * model that reads before it writes gets NaN, not the CPU's leftovers. */
static void fill_nan(void *p, td_dtype dt, size_t bytes)
{
    if (dt == TD_F32) {
        const uint32_t q = 0x7fc00000u;
        for (size_t i = 0; i + 4 <= bytes; i += 4)
            memcpy((char *)p + i, &q, 4);
    } else if (dt == TD_BF16 || dt == TD_F16) {
        const uint16_t q = dt == TD_BF16 ? 0x7fc0u : 0x7e00u;
        for (size_t i = 0; i + 2 <= bytes; i += 2)
            memcpy((char *)p + i, &q, 2);
    } else {
        memset(p, 0xa5, bytes);
    }
}

/* A record for dtype/shape: its exact bytes and page span (at least one). */
static int rec_for(td_backend *be, const char *origin, td_dtype dtype, int ndim, const int64_t *shape,
                   fence_rec *rec)
{
    fenced *f = fence_of(be);
    int64_t n = td_checked_numel(ndim, shape);
    if (ndim < 0 || ndim > TD_MAX_DIMS || n < 0 || (uint64_t)n > FENCE_HEAP_SPACE / 8)
        return td_fail(be->ctx, TD_EINVAL, "fenced backend: %s of a %d-dim tensor too large", origin, ndim);
    rec->shape = td_view(NULL, dtype, ndim, shape);
    rec->bytes = (size_t)n * td_dtype_size(dtype);
    rec->span = rec->bytes ? (rec->bytes + f->page - 1) / f->page * f->page : f->page;
    rec->origin = origin;
    return 0;
}

/* Open a new record's pages, fill them with NaN, close them; *t views it. */
static int place(td_backend *be, const fence_rec *rec, td_tensor *t)
{
    fenced *f = fence_of(be);
    TD_TRY(protect(be, rec->off, rec->span, PROT_READ | PROT_WRITE));
    fill_nan(f->base + rec->off, rec->shape.dtype, rec->span);
    TD_TRY(protect(be, rec->off, rec->span, PROT_NONE));
    *t = rec->shape;
    t->data = f->base + rec->off;
    return 0;
}

static void held(fenced *f, size_t bytes)
{
    f->live += bytes;
    if (f->live > f->peak)
        f->peak = f->live;
}

static int fenced_alloc(td_backend *be, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape)
{
    fenced *f = fence_of(be);
    fence_rec rec = { 0 };
    TD_TRY(rec_for(be, "alloc", dtype, ndim, shape, &rec));
    if (rec.span > f->arena_size - f->arena_used)
        return td_fail(be->ctx, TD_ENOMEM, "fenced backend: arena full: %zu bytes asked, %zu of %zu free",
                       rec.bytes, f->arena_size - f->arena_used, f->arena_size);
    rec.off = f->arena_used;
    TD_TRY(recs_insert(be->ctx, &f->arena, f->arena.n, &rec));
    f->arena_used += rec.span;
    held(f, rec.bytes);
    return place(be, &rec, t);
}

static size_t fenced_mark(td_backend *be)
{
    return fence_of(be)->arena_used;
}

static void fenced_reset(td_backend *be, size_t mark)
{
    fenced *f = fence_of(be);
    while (f->arena.n && f->arena.v[f->arena.n - 1].off >= mark)
        f->live -= f->arena.v[--f->arena.n].bytes;
    f->arena_used = mark < f->arena_used ? mark : f->arena_used;
}

/* First fit among the gaps between live heap records. */
static int heap_new(td_backend *be, const char *origin, td_dtype dtype, int ndim, const int64_t *shape,
                    td_tensor *t)
{
    fenced *f = fence_of(be);
    fence_rec rec = { 0 };
    size_t at = 0, start = f->arena_size;
    TD_TRY(rec_for(be, origin, dtype, ndim, shape, &rec));
    for (; at < f->heap.n; at++) {
        if (f->heap.v[at].off - start >= rec.span)
            break;
        start = f->heap.v[at].off + f->heap.v[at].span;
    }
    if (rec.span > f->size - start)
        return td_fail(be->ctx, TD_ENOMEM, "fenced backend: no room for %zu bytes (%s)", rec.bytes, origin);
    rec.off = start;
    TD_TRY(recs_insert(be->ctx, &f->heap, at, &rec));
    held(f, rec.bytes);
    TD_TRY(place(be, &rec, t));
    t->owns = TD_OWNS_BACKEND;
    return 0;
}

static int fenced_tensor_new(td_backend *be, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape)
{
    return heap_new(be, "tensor_new", dtype, ndim, shape, t);
}

/* A backend tensor that is not a live heap allocation is a model bug
 * (double free, freeing a view's base): fail the test loudly. */
static void fenced_tensor_free(td_backend *be, td_tensor *t)
{
    fenced *f = fence_of(be);
    if (t->owns == TD_OWNS_BACKEND) {
        unsigned char *p = t->data;
        size_t i = 0;
        while (i < f->heap.n && f->base + f->heap.v[i].off != p)
            i++;
        if (i == f->heap.n) {
            char s[96];
            fprintf(stderr, "fenced backend: tensor_free of %s at %p, not a live tensor_new/upload "
                    "allocation; last op: %s\n", td_shape_str(t, s, sizeof(s)), t->data,
                    f->last_op ? f->last_op : "(none)");
            abort();
        }
        madvise(p, f->heap.v[i].span, MADV_DONTNEED);
        f->live -= f->heap.v[i].bytes;
        memmove(f->heap.v + i, f->heap.v + i + 1, (f->heap.n - i - 1) * sizeof(fence_rec));
        f->heap.n--;
    }
    if (t->owns != TD_OWNS_HEAP)
        *t = (td_tensor){ 0 };
}

/* The dtype an upload is stored in: the bf16 variant narrows floats to
 * bf16 like CUDA; int8 weights stay. The upload interface does not say
 * which f32 tensor is a W8A8 scale, so those are narrowed too and widened
 * back inside linear_w8a8 (2^-9 relative, within the bf16 bars). */
static td_dtype upload_dtype(td_backend *be, td_dtype dt)
{
    if (be->act == TD_BF16 && (dt == TD_F32 || dt == TD_F16))
        return TD_BF16;
    return dt;
}

static int fenced_upload(td_backend *be, const td_tensor *host, td_tensor *dev)
{
    fenced *f = fence_of(be);
    td_tensor t;
    char s[96];
    size_t off, span;
    int rc = 0;
    if (!host || (!host->data && td_numel(host) > 0))
        return td_fail(be->ctx, TD_EINVAL, "fenced upload: no host tensor");
    TD_TRY(heap_new(be, "upload", upload_dtype(be, host->dtype), host->ndim, host->shape, &t));
    off = (size_t)((unsigned char *)t.data - f->base);
    span = rec_holding(&f->heap, off, off)->span;
    TD_TRY(protect(be, off, span, PROT_READ | PROT_WRITE));
    if (t.dtype == host->dtype && td_is_contiguous(host))
        memcpy(t.data, host->data, td_nbytes(host));
    else
        rc = td_tensor_copy(be->ctx, &t, host);
    TD_TRY(protect(be, off, span, PROT_NONE));
    if (rc < 0) {
        fenced_tensor_free(be, &t);
        return td_fail(be->ctx, rc, "fenced upload: cannot copy %s", td_shape_str(host, s, sizeof(s)));
    }
    f->uploaded += td_nbytes(&t);
    *dev = t;
    return 0;
}

/* The host's memory: the fence's reservation is address space only. */
static int fenced_available(td_backend *be, size_t *bytes)
{
    (void)be;
    *bytes = td_host_memory_available();
    return 0;
}

static size_t fenced_uploaded(td_backend *be)
{
    return fence_of(be)->uploaded;
}

size_t td_backend_fenced_peak(td_backend *be)
{
    return fence_of(be)->peak;
}

void td_backend_fenced_peak_reset(td_backend *be)
{
    fence_of(be)->peak = fence_of(be)->live;
}

/* --- op calls ---------------------------------------------------------- */

/* How an argument reaches the CPU kernel in the bf16 variant: ACT must be
 * the activation dtype and is widened; F32 (rope tables, attention bias,
 * W8A8 scales) may be any float dtype and is widened when not f32; W
 * (weights, vectors the CPU widens itself) passes as it is. */
typedef enum { ROLE_ACT, ROLE_F32, ROLE_W } fence_role;

typedef struct fence_arg {
    const char *name;
    const td_tensor *t;       /* NULL: an optional argument left out */
    fence_role role;
    int out;
} fence_arg;

typedef struct fence_call {
    td_backend *be;
    const char *op;
    int n, nopen;
    fence_arg a[FENCE_MAX_ARGS];
    td_tensor *use[FENCE_MAX_ARGS];   /* what the CPU op gets */
    td_tensor tmp[FENCE_MAX_ARGS];
    float *buf[FENCE_MAX_ARGS];       /* owned mirrors; NULL where shared or none */
    const fence_rec *open[FENCE_MAX_ARGS];
} fence_call;

/* Element offsets [lo, hi] a strided tensor touches (numel > 0). */
static void elem_range(const td_tensor *t, int64_t *lo, int64_t *hi)
{
    *lo = *hi = 0;
    for (int i = 0; i < t->ndim; i++) {
        int64_t e = (t->shape[i] - 1) * t->stride[i];
        if (e < 0)
            *lo += e;
        else
            *hi += e;
    }
}

/* Bytes [p, p + bytes) must lie in one live allocation; it is opened. */
static int open_range(fence_call *c, const char *name, const void *p, size_t bytes, const char *what)
{
    fenced *f = fence_of(c->be);
    const unsigned char *u = p;
    const fence_rec *r = NULL;
    if (u >= f->base && u < f->base + f->size && bytes <= (size_t)(f->base + f->size - u)) {
        size_t lo = (size_t)(u - f->base);
        r = rec_holding(lo < f->arena_size ? &f->arena : &f->heap, lo, lo + bytes);
    }
    if (!r)
        return td_fail(c->be->ctx, TD_EINVAL, "fenced backend: %s: %s %s (%zu bytes at %p) is not inside a "
                       "live allocation of the backend (host memory, freed or reset, or past its end)",
                       c->op, name, what, bytes, p);
    for (int i = 0; i < c->nopen; i++)
        if (c->open[i] == r)
            return 0;
    TD_TRY(protect(c->be, r->off, r->span, PROT_READ | PROT_WRITE));
    c->open[c->nopen++] = r;
    return 0;
}

static int open_tensor(fence_call *c, const char *name, const td_tensor *t)
{
    int64_t lo, hi, es;
    char s[96];
    if (!t || td_numel(t) <= 0)
        return 0;
    if (!t->data)
        return 0;   /* the CPU op reports it missing */
    elem_range(t, &lo, &hi);
    es = (int64_t)td_dtype_size(t->dtype);
    return open_range(c, name, (const char *)t->data + lo * es, (size_t)((hi - lo + 1) * es),
                      td_shape_str(t, s, sizeof(s)));
}

/* Strided copy through the CPU backend: converts any float dtypes. */
static int cpu_copy(fence_call *c, td_tensor *dst, const td_tensor *src)
{
    return inner(c->be)->ops->copy(inner(c->be), dst, src, 0);
}

/* An f32 mirror of t's layout (same strides), holding t's values; an
 * argument with the same view as an earlier one shares that mirror, so an
 * in-place op stays in place. */
static int widen(fence_call *c, int i)
{
    const td_tensor *t = c->a[i].t;
    int64_t lo, hi;
    char s[96];
    for (int j = 0; j < i; j++)
        if (c->a[j].t && c->use[j] != (td_tensor *)c->a[j].t && c->a[j].t->data == t->data &&
            c->a[j].t->ndim == t->ndim && !memcmp(c->a[j].t->shape, t->shape, sizeof(t->shape)) &&
            !memcmp(c->a[j].t->stride, t->stride, sizeof(t->stride))) {
            c->use[i] = c->use[j];
            return 0;
        }
    elem_range(t, &lo, &hi);
    if (!(c->buf[i] = malloc((size_t)(hi - lo + 1) * sizeof(float))))
        return td_fail(c->be->ctx, TD_ENOMEM, "fenced backend: %s: cannot widen %s %s", c->op,
                       c->a[i].name, td_shape_str(t, s, sizeof(s)));
    c->tmp[i] = *t;
    c->tmp[i].dtype = TD_F32;
    c->tmp[i].data = c->buf[i] - lo;
    c->tmp[i].owns = 0;
    c->use[i] = &c->tmp[i];
    return cpu_copy(c, &c->tmp[i], t);
}

static int is_float(td_dtype t)
{
    return t == TD_F32 || t == TD_BF16 || t == TD_F16;
}

/* The bf16 variant's dtype rule for one argument, then its f32 mirror. */
static int to_f32(fence_call *c, int i)
{
    const fence_arg *a = &c->a[i];
    char s[96];
    if (!a->t || !a->t->data || td_numel(a->t) <= 0 || a->role == ROLE_W)
        return 0;
    if (a->role == ROLE_ACT && a->t->dtype != c->be->act)
        return td_fail(c->be->ctx, TD_EINVAL, "%s: %s %s must be %s, the backend's activation dtype",
                       c->op, a->name, td_shape_str(a->t, s, sizeof(s)), td_dtype_name(c->be->act));
    if (!is_float(a->t->dtype) || a->t->dtype == TD_F32)
        return 0;   /* the CPU op judges it */
    return widen(c, i);
}

static void close_all(fence_call *c)
{
    for (int i = 0; i < c->nopen; i++)
        protect(c->be, c->open[i]->off, c->open[i]->span, PROT_NONE);
    c->nopen = 0;
    for (int i = 0; i < c->n; i++)
        free(c->buf[i]);
    fence_of(c->be)->in_op = 0;
}

/* Check and open every argument (and, bf16, widen); on failure nothing
 * stays open. */
static int fence_begin(td_backend *be, const char *op, const fence_arg *a, int n, fence_call *c)
{
    fenced *f = fence_of(be);
    int rc = 0;
    memset(c, 0, sizeof(*c));
    c->be = be;
    c->op = op;
    c->n = n;
    f->last_op = op;
    f->in_op = 1;
    for (int i = 0; i < n; i++) {
        c->a[i] = a[i];
        c->use[i] = (td_tensor *)a[i].t;
    }
    for (int i = 0; i < n && rc == 0; i++)
        rc = open_tensor(c, a[i].name, a[i].t);
    for (int i = 0; i < n && rc == 0 && be->act != TD_F32; i++)
        rc = to_f32(c, i);
    if (rc < 0)
        close_all(c);
    return rc;
}

/* After the CPU op: narrow the outputs' mirrors back, close everything. */
static int fence_end(fence_call *c, int rc)
{
    for (int i = 0; i < c->n && rc == 0; i++)
        if (c->a[i].out && c->use[i] != (td_tensor *)c->a[i].t)
            rc = cpu_copy(c, (td_tensor *)c->a[i].t, c->use[i]);
    close_all(c);
    return rc;
}

#define ARG(n, t, role, out) ((fence_arg){ n, t, role, out })
#define CPU(be) (inner(be)->ops)

static int fenced_write(td_backend *be, td_tensor *dst, const td_tensor *host)
{
    fence_arg a[] = { ARG("dst", dst, ROLE_W, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, "write", a, 1, &c));
    return fence_end(&c, CPU(be)->write(inner(be), dst, host));
}

static int fenced_read(td_backend *be, const td_tensor *src, td_tensor *host)
{
    fence_arg a[] = { ARG("src", src, ROLE_W, 0) };
    fence_call c;
    TD_TRY(fence_begin(be, "read", a, 1, &c));
    return fence_end(&c, CPU(be)->read(inner(be), src, host));
}

static int fenced_copy(td_backend *be, td_tensor *dst, const td_tensor *src, int accumulate)
{
    fence_arg a[] = { ARG("dst", dst, ROLE_W, 1), ARG("src", src, ROLE_W, 0) };
    fence_call c;
    TD_TRY(fence_begin(be, "copy", a, 2, &c));
    return fence_end(&c, CPU(be)->copy(inner(be), dst, src, accumulate));
}

static int fenced_fill(td_backend *be, td_tensor *t, float value)
{
    fence_arg a[] = { ARG("t", t, ROLE_W, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, "fill", a, 1, &c));
    return fence_end(&c, CPU(be)->fill(inner(be), t, value));
}

/* linear, or linear_gelu_tanh when gelu. */
static int fenced_lin(td_backend *be, int gelu, const td_tensor *x, const td_tensor *w, const td_tensor *bias,
                      td_tensor *y)
{
    fence_arg a[] = { ARG("x", x, ROLE_ACT, 0), ARG("w", w, ROLE_W, 0), ARG("bias", bias, ROLE_W, 0),
                      ARG("y", y, ROLE_ACT, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, gelu ? "linear_gelu_tanh" : "linear", a, 4, &c));
    return fence_end(&c, (gelu ? CPU(be)->linear_gelu_tanh : CPU(be)->linear)(inner(be), c.use[0], c.use[1],
                                                                             c.use[2], c.use[3]));
}

static int fenced_linear(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *bias,
                         td_tensor *y)
{
    return fenced_lin(be, 0, x, w, bias, y);
}

static int fenced_linear_gelu_tanh(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *bias,
                                   td_tensor *y)
{
    return fenced_lin(be, 1, x, w, bias, y);
}

static int fenced_linear_w8a8(td_backend *be, const td_tensor *x, const td_tensor *wq,
                              const td_tensor *wscale, const td_tensor *bias, td_tensor *y)
{
    fence_arg a[] = { ARG("x", x, ROLE_ACT, 0), ARG("wq", wq, ROLE_W, 0), ARG("wscale", wscale, ROLE_F32, 0),
                      ARG("bias", bias, ROLE_W, 0), ARG("y", y, ROLE_ACT, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, "linear_w8a8", a, 5, &c));
    return fence_end(&c, CPU(be)->linear_w8a8(inner(be), c.use[0], c.use[1], c.use[2], c.use[3], c.use[4]));
}

/* b passes as it is: an activation of the bf16 variant reaches the CPU op
 * as bf16 and is widened there, like a weight. y is read too (beta). */
static int fenced_matmul(td_backend *be, const td_tensor *a, const td_tensor *b, int trans_b, float alpha,
                         float beta, td_tensor *y)
{
    fence_arg g[] = { ARG("a", a, ROLE_ACT, 0), ARG("b", b, ROLE_W, 0), ARG("y", y, ROLE_ACT, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, "matmul", g, 3, &c));
    return fence_end(&c, CPU(be)->matmul(inner(be), c.use[0], c.use[1], trans_b, alpha, beta, c.use[2]));
}

static int fenced_layernorm(td_backend *be, const td_tensor *x, const td_tensor *weight,
                            const td_tensor *bias, float eps, td_tensor *y)
{
    fence_arg a[] = { ARG("x", x, ROLE_ACT, 0), ARG("weight", weight, ROLE_W, 0),
                      ARG("bias", bias, ROLE_W, 0), ARG("y", y, ROLE_ACT, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, "layernorm", a, 4, &c));
    return fence_end(&c, CPU(be)->layernorm(inner(be), c.use[0], c.use[1], c.use[2], eps, c.use[3]));
}

static int fenced_rmsnorm(td_backend *be, const td_tensor *x, const td_tensor *weight, float eps,
                          td_tensor *y)
{
    fence_arg a[] = { ARG("x", x, ROLE_ACT, 0), ARG("weight", weight, ROLE_W, 0), ARG("y", y, ROLE_ACT, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, "rmsnorm", a, 3, &c));
    return fence_end(&c, CPU(be)->rmsnorm(inner(be), c.use[0], c.use[1], eps, c.use[2]));
}

static int fenced_channel_rmsnorm(td_backend *be, const td_tensor *x, const td_tensor *gamma,
                                  const td_tensor *bias, td_tensor *y)
{
    fence_arg a[] = { ARG("x", x, ROLE_ACT, 0), ARG("gamma", gamma, ROLE_W, 0), ARG("bias", bias, ROLE_W, 0),
                      ARG("y", y, ROLE_ACT, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, "channel_rmsnorm", a, 4, &c));
    return fence_end(&c, CPU(be)->channel_rmsnorm(inner(be), c.use[0], c.use[1], c.use[2], c.use[3]));
}

/* gelu_tanh, silu, softmax: y = f(x). */
static int unary_call(td_backend *be, const char *op, const td_tensor *x, td_tensor *y, fence_call *c)
{
    fence_arg a[] = { ARG("x", x, ROLE_ACT, 0), ARG("y", y, ROLE_ACT, 1) };
    return fence_begin(be, op, a, 2, c);
}

static int fenced_gelu_tanh(td_backend *be, const td_tensor *x, td_tensor *y)
{
    fence_call c;
    TD_TRY(unary_call(be, "gelu_tanh", x, y, &c));
    return fence_end(&c, CPU(be)->gelu_tanh(inner(be), c.use[0], c.use[1]));
}

static int fenced_silu(td_backend *be, const td_tensor *x, td_tensor *y)
{
    fence_call c;
    TD_TRY(unary_call(be, "silu", x, y, &c));
    return fence_end(&c, CPU(be)->silu(inner(be), c.use[0], c.use[1]));
}

static int fenced_softmax(td_backend *be, const td_tensor *x, td_tensor *y)
{
    fence_call c;
    TD_TRY(unary_call(be, "softmax", x, y, &c));
    return fence_end(&c, CPU(be)->softmax(inner(be), c.use[0], c.use[1]));
}

static int fenced_clamp(td_backend *be, const td_tensor *x, float lo, float hi, td_tensor *y)
{
    fence_call c;
    TD_TRY(unary_call(be, "clamp", x, y, &c));
    return fence_end(&c, CPU(be)->clamp(inner(be), c.use[0], lo, hi, c.use[1]));
}

static int binary_call(td_backend *be, const char *op, const td_tensor *a0, const td_tensor *b,
                       td_tensor *y, fence_call *c)
{
    fence_arg a[] = { ARG("a", a0, ROLE_ACT, 0), ARG("b", b, ROLE_W, 0), ARG("y", y, ROLE_ACT, 1) };
    return fence_begin(be, op, a, 3, c);
}

static int fenced_add(td_backend *be, const td_tensor *a, const td_tensor *b, td_tensor *y)
{
    fence_call c;
    TD_TRY(binary_call(be, "add", a, b, y, &c));
    return fence_end(&c, CPU(be)->add(inner(be), c.use[0], c.use[1], c.use[2]));
}

static int fenced_mul(td_backend *be, const td_tensor *a, const td_tensor *b, td_tensor *y)
{
    fence_call c;
    TD_TRY(binary_call(be, "mul", a, b, y, &c));
    return fence_end(&c, CPU(be)->mul(inner(be), c.use[0], c.use[1], c.use[2]));
}

static int fenced_modulate(td_backend *be, const td_tensor *x, const td_tensor *shift,
                           const td_tensor *scale, td_tensor *y)
{
    fence_arg a[] = { ARG("x", x, ROLE_ACT, 0), ARG("shift", shift, ROLE_W, 0), ARG("scale", scale, ROLE_W, 0),
                      ARG("y", y, ROLE_ACT, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, "modulate", a, 4, &c));
    return fence_end(&c, CPU(be)->modulate(inner(be), c.use[0], c.use[1], c.use[2], c.use[3]));
}

static int fenced_add_gated(td_backend *be, td_tensor *x, const td_tensor *y, const td_tensor *gate)
{
    fence_arg a[] = { ARG("x", x, ROLE_ACT, 1), ARG("y", y, ROLE_ACT, 0), ARG("gate", gate, ROLE_W, 0) };
    fence_call c;
    TD_TRY(fence_begin(be, "add_gated", a, 3, &c));
    return fence_end(&c, CPU(be)->add_gated(inner(be), c.use[0], c.use[1], c.use[2]));
}

static int fenced_scale_shift(td_backend *be, const td_tensor *x, const td_tensor *scale,
                              const td_tensor *shift, td_tensor *y)
{
    fence_arg a[] = { ARG("x", x, ROLE_ACT, 0), ARG("scale", scale, ROLE_W, 0), ARG("shift", shift, ROLE_W, 0),
                      ARG("y", y, ROLE_ACT, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, "scale_shift", a, 4, &c));
    return fence_end(&c, CPU(be)->scale_shift(inner(be), c.use[0], c.use[1], c.use[2], c.use[3]));
}

/* embed / rel_pos_bias: the id arrays are host memory by design. */
static int fenced_embed(td_backend *be, const td_tensor *table, const int32_t *ids, int64_t n, td_tensor *y)
{
    fence_arg a[] = { ARG("table", table, ROLE_W, 0), ARG("y", y, ROLE_ACT, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, "embed", a, 2, &c));
    return fence_end(&c, CPU(be)->embed(inner(be), c.use[0], ids, n, c.use[1]));
}

static int fenced_rel_pos_bias(td_backend *be, const td_tensor *table, const int32_t *bucket, td_tensor *y)
{
    fence_arg a[] = { ARG("table", table, ROLE_W, 0), ARG("y", y, ROLE_ACT, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, "rel_pos_bias", a, 2, &c));
    return fence_end(&c, CPU(be)->rel_pos_bias(inner(be), c.use[0], bucket, c.use[1]));
}

static int fenced_rope(td_backend *be, const td_tensor *x, const td_tensor *cos_t, const td_tensor *sin_t,
                       td_tensor *y)
{
    fence_arg a[] = { ARG("x", x, ROLE_ACT, 0), ARG("cos", cos_t, ROLE_F32, 0), ARG("sin", sin_t, ROLE_F32, 0),
                      ARG("y", y, ROLE_ACT, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, "rope", a, 4, &c));
    return fence_end(&c, CPU(be)->rope(inner(be), c.use[0], c.use[1], c.use[2], c.use[3]));
}

static int fenced_attention(td_backend *be, const td_tensor *q, const td_tensor *k, const td_tensor *v,
                            const td_tensor *bias, float scale, int64_t kv_len, td_tensor *out)
{
    fence_arg a[] = { ARG("q", q, ROLE_ACT, 0), ARG("k", k, ROLE_ACT, 0), ARG("v", v, ROLE_ACT, 0),
                      ARG("bias", bias, ROLE_F32, 0), ARG("out", out, ROLE_ACT, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, "attention", a, 5, &c));
    return fence_end(&c, CPU(be)->attention(inner(be), c.use[0], c.use[1], c.use[2], c.use[3], scale,
                                            kv_len, c.use[4]));
}

static int fenced_conv3d(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *bias,
                         const td_conv3d_params *p, td_tensor *y)
{
    fence_arg a[] = { ARG("x", x, ROLE_ACT, 0), ARG("w", w, ROLE_W, 0), ARG("bias", bias, ROLE_W, 0),
                      ARG("y", y, ROLE_ACT, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, "conv3d", a, 4, &c));
    return fence_end(&c, CPU(be)->conv3d(inner(be), c.use[0], c.use[1], c.use[2], p, c.use[3]));
}

static int fenced_upsample_nearest(td_backend *be, const td_tensor *x, int fh, int fw, td_tensor *y)
{
    fence_call c;
    TD_TRY(unary_call(be, "upsample_nearest", x, y, &c));
    return fence_end(&c, CPU(be)->upsample_nearest(inner(be), c.use[0], fh, fw, c.use[1]));
}

static int fenced_sla_attention(td_backend *be, const td_tensor *q, const td_tensor *k, const td_tensor *v,
                                const td_tensor *proj_w, const td_tensor *proj_b, int blk_q, int blk_k,
                                double topk, td_tensor *out)
{
    fence_arg a[] = { ARG("q", q, ROLE_ACT, 0), ARG("k", k, ROLE_ACT, 0), ARG("v", v, ROLE_ACT, 0),
                      ARG("proj_w", proj_w, ROLE_W, 0), ARG("proj_b", proj_b, ROLE_W, 0),
                      ARG("out", out, ROLE_ACT, 1) };
    fence_call c;
    TD_TRY(fence_begin(be, "sla_attention", a, 6, &c));
    return fence_end(&c, CPU(be)->sla_attention(inner(be), c.use[0], c.use[1], c.use[2], c.use[3], c.use[4],
                                                blk_q, blk_k, topk, c.use[5]));
}

/* --- the backend ------------------------------------------------------- */

static void fenced_destroy(td_backend *be)
{
    fenced *f = fence_of(be);
    if (f) {
        registry_remove(f);
        munmap(f->base, f->size);
        td_backend_destroy(&f->cpu);
        free(f->arena.v);
        free(f->heap.v);
        free(f);
    }
    free(be);
}

static const td_backend_ops fenced_ops = {
    .name = "fenced",
    .destroy = fenced_destroy,
    .available = fenced_available,
    .uploaded = fenced_uploaded,
    .peak = td_backend_fenced_peak,
    .peak_reset = td_backend_fenced_peak_reset,
    .alloc = fenced_alloc,
    .mark = fenced_mark,
    .reset = fenced_reset,
    .tensor_new = fenced_tensor_new,
    .tensor_free = fenced_tensor_free,
    .upload = fenced_upload,
    .write = fenced_write,
    .read = fenced_read,
    .copy = fenced_copy,
    .fill = fenced_fill,
    .linear = fenced_linear,
    .linear_gelu_tanh = fenced_linear_gelu_tanh,
    .linear_w8a8 = fenced_linear_w8a8,
    .matmul = fenced_matmul,
    .layernorm = fenced_layernorm,
    .rmsnorm = fenced_rmsnorm,
    .channel_rmsnorm = fenced_channel_rmsnorm,
    .gelu_tanh = fenced_gelu_tanh,
    .silu = fenced_silu,
    .softmax = fenced_softmax,
    .add = fenced_add,
    .mul = fenced_mul,
    .modulate = fenced_modulate,
    .add_gated = fenced_add_gated,
    .clamp = fenced_clamp,
    .scale_shift = fenced_scale_shift,
    .embed = fenced_embed,
    .rel_pos_bias = fenced_rel_pos_bias,
    .rope = fenced_rope,
    .attention = fenced_attention,
    .conv3d = fenced_conv3d,
    .upsample_nearest = fenced_upsample_nearest,
    .sla_attention = fenced_sla_attention,
};

static int fenced_create(td_ctx *ctx, td_dtype act, size_t arena_bytes, td_backend **out)
{
    td_backend *be = calloc(1, sizeof(*be));
    fenced *f = calloc(1, sizeof(*f));
    int rc;
    *out = NULL;
    if (!be || !f) {
        free(be);
        free(f);
        return td_fail(ctx, TD_ENOMEM, "fenced backend: cannot allocate its state");
    }
    be->ops = &fenced_ops;
    be->ctx = ctx;
    be->act = act;
    be->priv = f;
    f->page = (size_t)sysconf(_SC_PAGESIZE);
    arena_bytes = arena_bytes ? arena_bytes : FENCE_ARENA_DEFAULT;
    f->arena_size = (arena_bytes + f->page - 1) / f->page * f->page;
    f->size = f->arena_size + FENCE_HEAP_SPACE;
    f->base = mmap(NULL, f->size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (f->base == MAP_FAILED) {
        free(be);
        free(f);
        return td_fail(ctx, TD_ENOMEM, "fenced backend: cannot reserve %zu bytes of address space",
                       arena_bytes + FENCE_HEAP_SPACE);
    }
    rc = td_backend_cpu_create(ctx, 0, &f->cpu);
    if (rc < 0) {
        munmap(f->base, f->size);
        free(be);
        free(f);
        return rc;
    }
    registry_add(f);
    *out = be;
    return 0;
}

int td_backend_fenced_f32_create(td_ctx *ctx, size_t arena_bytes, td_backend **out)
{
    return fenced_create(ctx, TD_F32, arena_bytes, out);
}

int td_backend_fenced_bf16_create(td_ctx *ctx, size_t arena_bytes, td_backend **out)
{
    return fenced_create(ctx, TD_BF16, arena_bytes, out);
}
