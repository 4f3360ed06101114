#include "pickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct vm {
    td_ctx *ctx;
    td_pickle *p;
    const uint8_t *d;
    size_t n, pos, op_pos;
    td_pk **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nmarks, mcap;
    td_pk **memo;
    size_t memo_len;          /* allocated slots */
    size_t memo_count;        /* slots set: Python's len(memo), MEMOIZE's index */
} vm;

#define FAIL(m, code, ...) vm_fail(m, code, __VA_ARGS__)

__attribute__((format(printf, 3, 4)))
static int vm_fail(vm *m, int code, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return td_fail(m->ctx, code, "%s: data.pkl offset %zu: %s", m->p->label, m->op_pos, msg);
}

static int grow(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *nb = realloc(*buf, c * elem);
    if (!nb)
        return -1;
    *buf = nb;
    *cap = c;
    return 0;
}

static td_pk *new_value(vm *m, td_pk_kind kind)
{
    td_pk *v;
    td_pickle *p = m->p;
    if (grow((void **)&p->all, &p->cap_all, p->n_all + 1, sizeof(*p->all)) ||
        !(v = calloc(1, sizeof(*v)))) {
        FAIL(m, TD_ENOMEM, "out of memory");
        return NULL;
    }
    v->kind = kind;
    p->all[p->n_all++] = v;
    return v;
}

static int push(vm *m, td_pk *v)
{
    if (!v)
        return TD_ENOMEM;
    if (grow((void **)&m->stack, &m->scap, m->sp + 1, sizeof(*m->stack)))
        return FAIL(m, TD_ENOMEM, "out of memory for the pickle stack");
    m->stack[m->sp++] = v;
    return 0;
}

static int push_new(vm *m, td_pk_kind kind)
{
    return push(m, new_value(m, kind));
}

static int add_item(vm *m, td_pk *c, td_pk *item)
{
    if (grow((void **)&c->items, &c->cap, c->n + 1, sizeof(*c->items)))
        return FAIL(m, TD_ENOMEM, "out of memory for a container");
    c->items[c->n++] = item;
    return 0;
}

static int need(vm *m, size_t k)
{
    if (m->n - m->pos < k)
        return FAIL(m, TD_EFORMAT, "pickle truncated (needs %zu more bytes)", k);
    return 0;
}

static uint64_t rd_le(const uint8_t *p, int k)
{
    uint64_t v = 0;
    for (int i = k - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int pop_mark(vm *m, size_t *mark)
{
    if (!m->nmarks)
        return FAIL(m, TD_EFORMAT, "opcode needs a MARK but none is open");
    *mark = m->marks[--m->nmarks];
    if (*mark > m->sp)
        return FAIL(m, TD_EFORMAT, "MARK above the stack top");
    return 0;
}

static const char *kind_name(td_pk_kind k)
{
    static const char *const names[] = {
        "None", "bool", "int", "float", "str", "tuple", "list", "dict", "set",
        "global", "storage", "tensor",
    };
    return names[k];
}

/* ---- globals ---------------------------------------------------------- */

static const struct { const char *name; td_dtype dt; } storage_types[] = {
    { "FloatStorage", TD_F32 }, { "HalfStorage", TD_F16 }, { "BFloat16Storage", TD_BF16 },
    { "CharStorage", TD_I8 }, { "ByteStorage", TD_U8 }, { "LongStorage", TD_I64 },
    { "IntStorage", TD_I32 }, { "DoubleStorage", TD_F64 }, { "BoolStorage", TD_BOOL },
    { "Float8_e4m3fnStorage", TD_F8E4M3 },
};

static const struct { const char *name; td_dtype dt; } dtypes[] = {
    { "float32", TD_F32 }, { "float", TD_F32 }, { "float16", TD_F16 }, { "half", TD_F16 },
    { "bfloat16", TD_BF16 }, { "int8", TD_I8 }, { "uint8", TD_U8 }, { "int64", TD_I64 },
    { "long", TD_I64 }, { "int32", TD_I32 }, { "int", TD_I32 }, { "float64", TD_F64 },
    { "double", TD_F64 }, { "bool", TD_BOOL }, { "float8_e4m3fn", TD_F8E4M3 },
};

static int is(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && !memcmp(s, lit, len);
}

/* Harmless torch types we have no dtype for: refused as unsupported, not
 * as unsafe, so the message says what is really wrong. */
static int is_unsupported_dtype(const char *name, size_t nl)
{
    static const char *const others[] = {
        "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "int16", "short", "uint16",
        "uint32", "uint64", "complex32", "complex64", "complex128", "cfloat", "cdouble",
    };
    if (nl > 7 && !memcmp(name + nl - 7, "Storage", 7))
        return 1;
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        if (is(name, nl, others[i]))
            return 1;
    return 0;
}

static int push_global(vm *m, const char *mod, size_t ml, const char *name, size_t nl)
{
    td_pk *g = new_value(m, TD_PK_GLOBAL);
    if (!g)
        return TD_ENOMEM;
    if (is(mod, ml, "collections") && is(name, nl, "OrderedDict"))
        g->g = TD_PKG_ORDERED_DICT;
    else if (is(mod, ml, "torch._utils") && is(name, nl, "_rebuild_tensor_v2"))
        g->g = TD_PKG_REBUILD_TENSOR_V2;
    else if (is(mod, ml, "torch._utils") && is(name, nl, "_rebuild_tensor_v3"))
        g->g = TD_PKG_REBUILD_TENSOR_V3;
    else if (is(mod, ml, "torch._utils") && is(name, nl, "_rebuild_parameter"))
        g->g = TD_PKG_REBUILD_PARAMETER;
    else if (is(mod, ml, "torch._utils") && is(name, nl, "_rebuild_parameter_with_state"))
        g->g = TD_PKG_REBUILD_PARAMETER_WITH_STATE;
    else if ((is(mod, ml, "torch.storage") || is(mod, ml, "torch")) &&
             is(name, nl, "UntypedStorage"))
        g->g = TD_PKG_UNTYPED_STORAGE;
    else {
        int found = 0;
        for (size_t i = 0; is(mod, ml, "torch") && !found &&
                           i < sizeof(storage_types) / sizeof(storage_types[0]); i++)
            if (is(name, nl, storage_types[i].name)) {
                g->g = TD_PKG_TYPED_STORAGE;
                g->dtype = storage_types[i].dt;
                found = 1;
            }
        for (size_t i = 0; is(mod, ml, "torch") && !found &&
                           i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
            if (is(name, nl, dtypes[i].name)) {
                g->g = TD_PKG_DTYPE;
                g->dtype = dtypes[i].dt;
                found = 1;
            }
        if (!found && is(mod, ml, "torch") && is_unsupported_dtype(name, nl))
            return FAIL(m, TD_EUNSUPPORTED, "tensor type torch.%.*s is not supported",
                        (int)(nl > 100 ? 100 : nl), name);
        if (!found)
            return FAIL(m, TD_EUNSAFE, "pickle global %.*s.%.*s is not allowed",
                        (int)(ml > 100 ? 100 : ml), mod, (int)(nl > 100 ? 100 : nl), name);
    }
    return push(m, g);
}

static int op_global(vm *m)
{
    const uint8_t *s = m->d + m->pos, *end = m->d + m->n;
    const uint8_t *nl1 = memchr(s, '\n', (size_t)(end - s));
    const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
    if (!nl2)
        return FAIL(m, TD_EFORMAT, "pickle truncated in GLOBAL");
    m->pos = (size_t)(nl2 + 1 - m->d);
    return push_global(m, (const char *)s, (size_t)(nl1 - s), (const char *)nl1 + 1,
                       (size_t)(nl2 - nl1 - 1));
}

static int op_stack_global(vm *m)
{
    if (m->sp < 2 || m->stack[m->sp - 1]->kind != TD_PK_STR || m->stack[m->sp - 2]->kind != TD_PK_STR)
        return FAIL(m, TD_EFORMAT, "STACK_GLOBAL needs two strings on the stack");
    td_pk *name = m->stack[--m->sp], *mod = m->stack[--m->sp];
    return push_global(m, mod->s, mod->len, name->s, name->len);
}

/* ---- reductions: the accepted callables, interpreted ------------------- */

static int int_arg(vm *m, const td_pk *v, const char *what, int64_t *out)
{
    if (v->kind != TD_PK_INT || v->i < 0)
        return FAIL(m, TD_EFORMAT, "tensor %s is a %s, expected a non-negative int", what,
                    v->kind == TD_PK_INT ? "negative int" : kind_name(v->kind));
    *out = v->i;
    return 0;
}

static int dims_arg(vm *m, const td_pk *v, const char *what, int64_t *dims, int *ndim)
{
    if (v->kind != TD_PK_TUPLE)
        return FAIL(m, TD_EFORMAT, "tensor %s is a %s, expected a tuple", what, kind_name(v->kind));
    if (v->n > TD_MAX_DIMS)
        return FAIL(m, TD_EUNSUPPORTED, "tensor with %zu dims (at most %d supported)", v->n,
                    TD_MAX_DIMS);
    for (size_t i = 0; i < v->n; i++)
        TD_TRY(int_arg(m, v->items[i], what, &dims[i]));
    *ndim = (int)v->n;
    return 0;
}

static int rebuild_tensor(vm *m, const td_pk *args, int v3)
{
    size_t lo = v3 ? 7 : 6;
    td_pk_tensor *t;
    td_pk *v;
    int nstride;

    if (args->n != lo && args->n != lo + 1)
        return FAIL(m, TD_EFORMAT, "_rebuild_tensor_v%d takes %zu or %zu arguments, got %zu",
                    v3 ? 3 : 2, lo, lo + 1, args->n);
    if (args->items[0]->kind != TD_PK_STORAGE)
        return FAIL(m, TD_EFORMAT, "tensor storage is a %s, expected a storage",
                    kind_name(args->items[0]->kind));
    if (v3 && (args->items[6]->kind != TD_PK_GLOBAL || args->items[6]->g != TD_PKG_DTYPE))
        return FAIL(m, TD_EFORMAT, "_rebuild_tensor_v3 dtype argument is not a torch dtype");
    if (!(v = new_value(m, TD_PK_TENSOR)) || !(t = v->t = calloc(1, sizeof(*t))))
        return FAIL(m, TD_ENOMEM, "out of memory");
    t->storage = args->items[0];
    t->dtype = v3 ? args->items[6]->dtype : args->items[0]->st.dtype;
    TD_TRY(int_arg(m, args->items[1], "storage offset", &t->offset));
    TD_TRY(dims_arg(m, args->items[2], "size", t->shape, &t->ndim));
    TD_TRY(dims_arg(m, args->items[3], "stride", t->stride, &nstride));
    if (nstride != t->ndim)
        return FAIL(m, TD_EFORMAT, "tensor has %d sizes but %d strides", t->ndim, nstride);
    return push(m, v);
}

static int op_reduce(vm *m)
{
    td_pk *args, *fn;

    if (m->sp < 2)
        return FAIL(m, TD_EFORMAT, "REDUCE on a stack of %zu items", m->sp);
    args = m->stack[--m->sp];
    fn = m->stack[--m->sp];
    if (fn->kind != TD_PK_GLOBAL)
        return FAIL(m, TD_EUNSAFE, "REDUCE on a %s: only whitelisted globals may be called",
                    kind_name(fn->kind));
    if (args->kind != TD_PK_TUPLE)
        return FAIL(m, TD_EFORMAT, "REDUCE arguments are a %s, not a tuple", kind_name(args->kind));
    switch (fn->g) {
    case TD_PKG_ORDERED_DICT:
        if (args->n)
            return FAIL(m, TD_EUNSUPPORTED, "OrderedDict called with %zu arguments", args->n);
        return push_new(m, TD_PK_DICT);
    case TD_PKG_REBUILD_TENSOR_V2:
    case TD_PKG_REBUILD_TENSOR_V3:
        return rebuild_tensor(m, args, fn->g == TD_PKG_REBUILD_TENSOR_V3);
    case TD_PKG_REBUILD_PARAMETER:
    case TD_PKG_REBUILD_PARAMETER_WITH_STATE: {
        size_t want = fn->g == TD_PKG_REBUILD_PARAMETER ? 3 : 4;
        if (args->n != want || args->items[0]->kind != TD_PK_TENSOR)
            return FAIL(m, TD_EFORMAT, "_rebuild_parameter needs a tensor and %zu more arguments",
                        want - 1);
        return push(m, args->items[0]);
    }
    default:
        return FAIL(m, TD_EUNSAFE, "REDUCE on a torch storage type or dtype is not allowed");
    }
}

static int op_persid(vm *m)
{
    td_pk *pid, *v, **it;

    if (!m->sp)
        return FAIL(m, TD_EFORMAT, "BINPERSID on an empty stack");
    pid = m->stack[--m->sp];
    it = pid->items;
    if (pid->kind != TD_PK_TUPLE || pid->n != 5 || it[0]->kind != TD_PK_STR ||
        !is(it[0]->s, it[0]->len, "storage"))
        return FAIL(m, TD_EFORMAT, "persistent id is not ('storage', type, key, location, numel)");
    if (it[1]->kind != TD_PK_GLOBAL ||
        (it[1]->g != TD_PKG_TYPED_STORAGE && it[1]->g != TD_PKG_UNTYPED_STORAGE))
        return FAIL(m, TD_EFORMAT, "persistent id storage type is not a torch storage class");
    if (it[2]->kind != TD_PK_STR || it[3]->kind != TD_PK_STR)
        return FAIL(m, TD_EFORMAT, "persistent id key or location is not a string");
    if (it[4]->kind != TD_PK_INT || it[4]->i < 0)
        return FAIL(m, TD_EFORMAT, "persistent id element count is not a non-negative int");
    if (!(v = new_value(m, TD_PK_STORAGE)))
        return TD_ENOMEM;
    v->st.key = it[2]->s;
    v->st.key_len = it[2]->len;
    v->st.dtype = it[1]->g == TD_PKG_TYPED_STORAGE ? it[1]->dtype : TD_U8;
    v->st.numel = (uint64_t)it[4]->i;
    return push(m, v);
}

/* ---- containers ------------------------------------------------------- */

static int op_setitems(vm *m, int many)
{
    size_t mark = 0;
    if (many)
        TD_TRY(pop_mark(m, &mark));
    else
        mark = m->sp >= 2 ? m->sp - 2 : 0;
    if (mark < 1 || (m->sp - mark) % 2)
        return FAIL(m, TD_EFORMAT, "SETITEM%s without a dict and key/value pairs", many ? "S" : "");
    td_pk *d = m->stack[mark - 1];
    if (d->kind != TD_PK_DICT)
        return FAIL(m, TD_EFORMAT, "SETITEM%s on a %s (only dicts take items)", many ? "S" : "",
                    kind_name(d->kind));
    for (size_t i = mark; i < m->sp; i++)
        TD_TRY(add_item(m, d, m->stack[i]));
    m->sp = mark;
    return 0;
}

static int op_appends(vm *m, int many, td_pk_kind want, const char *opname)
{
    size_t mark = 0;
    if (many)
        TD_TRY(pop_mark(m, &mark));
    else
        mark = m->sp >= 1 ? m->sp - 1 : 0;
    if (mark < 1)
        return FAIL(m, TD_EFORMAT, "%s without a container", opname);
    td_pk *c = m->stack[mark - 1];
    if (c->kind != want)
        return FAIL(m, TD_EFORMAT, "%s on a %s", opname, kind_name(c->kind));
    for (size_t i = mark; i < m->sp; i++)
        TD_TRY(add_item(m, c, m->stack[i]));
    m->sp = mark;
    return 0;
}

static int make_tuple(vm *m, size_t from)
{
    td_pk *t = new_value(m, TD_PK_TUPLE);
    if (!t)
        return TD_ENOMEM;
    for (size_t i = from; i < m->sp; i++)
        TD_TRY(add_item(m, t, m->stack[i]));
    m->sp = from;
    return push(m, t);
}

static int op_build(vm *m)
{
    if (m->sp < 2)
        return FAIL(m, TD_EFORMAT, "BUILD on a stack of %zu items", m->sp);
    td_pk *obj = m->stack[m->sp - 2];
    /* A state dict's _metadata attribute, a parameter's python state: not
     * needed to read the tensors, dropped. */
    if (obj->kind != TD_PK_DICT && obj->kind != TD_PK_TENSOR)
        return FAIL(m, TD_EUNSAFE, "BUILD on a %s is not allowed", kind_name(obj->kind));
    m->sp--;
    return 0;
}

/* ---- scalars ---------------------------------------------------------- */

static int push_int(vm *m, int64_t i)
{
    td_pk *v = new_value(m, TD_PK_INT);
    if (!v)
        return TD_ENOMEM;
    v->i = i;
    return push(m, v);
}

static int push_str(vm *m, int lenbytes)
{
    uint64_t len;
    td_pk *v;
    TD_TRY(need(m, (size_t)lenbytes));
    len = rd_le(m->d + m->pos, lenbytes);
    m->pos += (size_t)lenbytes;
    if (len > m->n - m->pos)
        return FAIL(m, TD_EFORMAT, "string of %llu bytes runs past the end of the pickle",
                    (unsigned long long)len);
    if (!(v = new_value(m, TD_PK_STR)))
        return TD_ENOMEM;
    v->s = (const char *)m->d + m->pos;
    v->len = (size_t)len;
    m->pos += (size_t)len;
    return push(m, v);
}

static int op_long1(vm *m)
{
    TD_TRY(need(m, 1));
    int k = m->d[m->pos++];
    if (k > 8)
        return FAIL(m, TD_EUNSUPPORTED, "integer of %d bytes is too large", k);
    TD_TRY(need(m, (size_t)k));
    uint64_t u = rd_le(m->d + m->pos, k);
    if (k > 0 && k < 8 && (m->d[m->pos + k - 1] & 0x80))
        u |= ~0ull << (8 * k);
    m->pos += (size_t)k;
    return push_int(m, (int64_t)u);
}

static int op_binfloat(vm *m)
{
    uint64_t u = 0;
    td_pk *v;
    TD_TRY(need(m, 8));
    for (int i = 0; i < 8; i++)
        u = u << 8 | m->d[m->pos + i];
    m->pos += 8;
    if (!(v = new_value(m, TD_PK_FLOAT)))
        return TD_ENOMEM;
    memcpy(&v->f, &u, 8);
    return push(m, v);
}

/* ---- memo ------------------------------------------------------------- */

static int memo_put(vm *m, uint64_t idx)
{
    if (!m->sp)
        return FAIL(m, TD_EFORMAT, "memo put on an empty stack");
    /* The pickler numbers memo entries consecutively, one per op, so an
     * index beyond the pickle's length is bogus. */
    if (idx >= m->n)
        return FAIL(m, TD_EFORMAT, "memo index %llu out of range", (unsigned long long)idx);
    if (idx >= m->memo_len) {
        size_t cap = m->memo_len;
        if (grow((void **)&m->memo, &cap, (size_t)idx + 1, sizeof(*m->memo)))
            return FAIL(m, TD_ENOMEM, "out of memory for the memo");
        memset(m->memo + m->memo_len, 0, (cap - m->memo_len) * sizeof(*m->memo));
        m->memo_len = cap;
    }
    if (!m->memo[idx])
        m->memo_count++;
    m->memo[idx] = m->stack[m->sp - 1];
    return 0;
}

static int memo_get(vm *m, uint64_t idx)
{
    if (idx >= m->memo_len || !m->memo[idx])
        return FAIL(m, TD_EFORMAT, "memo get of unset index %llu", (unsigned long long)idx);
    return push(m, m->memo[idx]);
}

static int memo_op(vm *m, int k, int put)
{
    TD_TRY(need(m, (size_t)k));
    uint64_t idx = rd_le(m->d + m->pos, k);
    m->pos += (size_t)k;
    return put ? memo_put(m, idx) : memo_get(m, idx);
}

/* ---- the loop --------------------------------------------------------- */

static int step(vm *m, int *stop)
{
    uint8_t op = m->d[m->pos++];
    size_t mark = 0;

    switch (op) {
    case 0x80: /* PROTO */
        TD_TRY(need(m, 1));
        if (m->d[m->pos] > 5)
            return FAIL(m, TD_EUNSUPPORTED, "pickle protocol %d", m->d[m->pos]);
        m->pos++;
        return 0;
    case 0x95: /* FRAME: a length hint only */
        TD_TRY(need(m, 8));
        m->pos += 8;
        return 0;
    case '}': return push_new(m, TD_PK_DICT);
    case ']': return push_new(m, TD_PK_LIST);
    case ')': return push_new(m, TD_PK_TUPLE);
    case 0x8f: return push_new(m, TD_PK_SET);          /* EMPTY_SET */
    case 'N': return push_new(m, TD_PK_NONE);
    case 0x88: case 0x89: {                            /* NEWTRUE, NEWFALSE */
        td_pk *v = new_value(m, TD_PK_BOOL);
        if (v)
            v->i = op == 0x88;
        return push(m, v);
    }
    case '(': /* MARK */
        if (grow((void **)&m->marks, &m->mcap, m->nmarks + 1, sizeof(*m->marks)))
            return FAIL(m, TD_ENOMEM, "out of memory for marks");
        m->marks[m->nmarks++] = m->sp;
        return 0;
    case 't': /* TUPLE */
        TD_TRY(pop_mark(m, &mark));
        return make_tuple(m, mark);
    case 0x85: case 0x86: case 0x87: {                 /* TUPLE1..3 */
        size_t k = (size_t)(op - 0x84);
        if (m->sp < k)
            return FAIL(m, TD_EFORMAT, "TUPLE%zu on a stack of %zu items", k, m->sp);
        return make_tuple(m, m->sp - k);
    }
    case 'q': return memo_op(m, 1, 1);                 /* BINPUT */
    case 'r': return memo_op(m, 4, 1);                 /* LONG_BINPUT */
    case 0x94: return memo_put(m, m->memo_count);        /* MEMOIZE */
    case 'h': return memo_op(m, 1, 0);                 /* BINGET */
    case 'j': return memo_op(m, 4, 0);                 /* LONG_BINGET */
    case 'K': TD_TRY(need(m, 1)); m->pos += 1; return push_int(m, m->d[m->pos - 1]);
    case 'M': TD_TRY(need(m, 2)); m->pos += 2; return push_int(m, (int64_t)rd_le(m->d + m->pos - 2, 2));
    case 'J': TD_TRY(need(m, 4)); m->pos += 4;
        return push_int(m, (int32_t)(uint32_t)rd_le(m->d + m->pos - 4, 4));
    case 0x8a: return op_long1(m);
    case 'G': return op_binfloat(m);
    case 'X': return push_str(m, 4);                   /* BINUNICODE */
    case 0x8c: return push_str(m, 1);                  /* SHORT_BINUNICODE */
    case 0x8d: return push_str(m, 8);                  /* BINUNICODE8 */
    case 'c': return op_global(m);
    case 0x93: return op_stack_global(m);
    case 'R': return op_reduce(m);
    case 'b': return op_build(m);
    case 'Q': return op_persid(m);
    case 's': return op_setitems(m, 0);
    case 'u': return op_setitems(m, 1);
    case 'a': return op_appends(m, 0, TD_PK_LIST, "APPEND");
    case 'e': return op_appends(m, 1, TD_PK_LIST, "APPENDS");
    case 0x90: return op_appends(m, 1, TD_PK_SET, "ADDITEMS");
    case '.':
        if (!m->sp)
            return FAIL(m, TD_EFORMAT, "STOP on an empty stack");
        m->p->root = m->stack[m->sp - 1];
        *stop = 1;
        return 0;
    default:
        return FAIL(m, TD_EUNSUPPORTED, "pickle opcode 0x%02x is not supported", op);
    }
}

int td_pickle_load(td_ctx *ctx, const char *label, const uint8_t *data, size_t size,
                   td_pickle *out)
{
    vm m;
    int rc = 0, stop = 0;

    memset(out, 0, sizeof(*out));
    out->label = label;
    memset(&m, 0, sizeof(m));
    m.ctx = ctx;
    m.p = out;
    m.d = data;
    m.n = size;
    while (!rc && !stop) {
        m.op_pos = m.pos;
        if (m.pos >= m.n)
            rc = FAIL(&m, TD_EFORMAT, "pickle ends without STOP (truncated?)");
        else
            rc = step(&m, &stop);
    }
    free(m.stack);
    free(m.marks);
    free(m.memo);
    if (rc)
        td_pickle_free(out);
    return rc;
}

void td_pickle_free(td_pickle *p)
{
    for (size_t i = 0; i < p->n_all; i++) {
        free(p->all[i]->items);
        free(p->all[i]->t);
        free(p->all[i]);
    }
    free(p->all);
    memset(p, 0, sizeof(*p));
}
