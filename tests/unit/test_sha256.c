/* SHA-256 against the FIPS 180-4 / NIST example vectors, fed whole and in
 * random pieces, and the tensor hash of a strided view vs its copy. */
#include <string.h>

#include "check.h"
#include "core/sha256.h"

static void hex_of(const void *data, size_t n, char hex[65])
{
    td_sha256 s;
    uint8_t d[32];
    td_sha256_init(&s);
    td_sha256_update(&s, data, n);
    td_sha256_final(&s, d);
    td_sha256_hex(d, hex);
}

int main(void)
{
    static const struct { const char *msg; const char *hex; } v[] = {
        { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
        { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
        { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
        { "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
          "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
    };
    test_rng rng = test_rng_seeded();
    char hex[65];

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        hex_of(v[i].msg, strlen(v[i].msg), hex);
        CHECK(!strcmp(hex, v[i].hex), "vector %zu: %s", i, hex);
    }
    /* One million 'a': crosses many blocks; fed in random-sized pieces. */
    static char mil[1000000];
    memset(mil, 'a', sizeof(mil));
    td_sha256 s;
    uint8_t d[32];
    td_sha256_init(&s);
    for (size_t pos = 0; pos < sizeof(mil);) {
        size_t k = 1 + test_next(&rng) % 200;
        if (k > sizeof(mil) - pos)
            k = sizeof(mil) - pos;
        td_sha256_update(&s, mil + pos, k);
        pos += k;
    }
    td_sha256_final(&s, d);
    td_sha256_hex(d, hex);
    CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
          "million a: %s", hex);

    /* A transposed view hashes like its contiguous copy. */
    float a[6 * 7], at[7 * 6];
    test_fill(&rng, a, 42, 1.0f);
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 7; j++)
            at[j * 6 + i] = a[i * 7 + j];
    td_tensor base = td_view2(a, TD_F32, 6, 7), view = base, copy = td_view2(at, TD_F32, 7, 6);
    view.shape[0] = 7; view.shape[1] = 6; view.stride[0] = 1; view.stride[1] = 7;
    uint8_t d1[32], d2[32];
    td_sha256_tensor(&view, d1);
    td_sha256_tensor(&copy, d2);
    CHECK(!memcmp(d1, d2, 32), "strided hash differs from the contiguous one");
    return check_summary();
}
