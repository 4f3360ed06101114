#include "sha256.h"

void td_sha256_tensor(const td_tensor *t, uint8_t digest[32])
{
    td_sha256 s;
    size_t es = td_dtype_size(t->dtype);
    int64_t numel = td_numel(t);

    td_sha256_init(&s);
    if (td_is_contiguous(t)) {
        td_sha256_update(&s, t->data, (size_t)numel * es);
    } else if (numel > 0) {
        /* Walk rows of the innermost dim, batching elements into a buffer. */
        uint8_t buf[4096];
        size_t used = 0;
        int64_t idx[TD_MAX_DIMS] = { 0 };
        int nd = t->ndim;
        for (int64_t done = 0; done < numel; done++) {
            int64_t off = 0;
            for (int d = 0; d < nd; d++)
                off += idx[d] * t->stride[d];
            if (used + es > sizeof(buf)) {
                td_sha256_update(&s, buf, used);
                used = 0;
            }
            memcpy(buf + used, (const uint8_t *)t->data + off * (int64_t)es, es);
            used += es;
            for (int d = nd - 1; d >= 0 && ++idx[d] == t->shape[d]; d--)
                idx[d] = 0;
        }
        td_sha256_update(&s, buf, used);
    }
    td_sha256_final(&s, digest);
}
