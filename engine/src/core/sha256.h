/* SHA-256 (FIPS 180-4), streaming: for tensor hashes and cache keys. */
#ifndef TD_CORE_SHA256_H
#define TD_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

typedef struct td_sha256 {
    uint32_t h[8];
    uint64_t len;          /* bytes hashed so far */
    uint8_t buf[64];
    size_t used;
} td_sha256;

void td_sha256_init(td_sha256 *s);
void td_sha256_update(td_sha256 *s, const void *data, size_t n);
void td_sha256_final(td_sha256 *s, uint8_t digest[32]);
/* Lower-case hex of a digest into hex[65]. */
void td_sha256_hex(const uint8_t digest[32], char hex[65]);

/* Hash of a tensor's elements as stored (little-endian), in C order: a
 * strided view hashes the same as its contiguous copy. */
void td_sha256_tensor(const td_tensor *t, uint8_t digest[32]);

#endif
