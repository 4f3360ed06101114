#include "dtype.h"

#include <math.h>

static const struct {
    size_t size;
    const char *name;
    const char *st;
} dtype_info[TD_DTYPE_COUNT] = {
    [TD_F32]    = { 4, "f32",     "F32" },
    [TD_F16]    = { 2, "f16",     "F16" },
    [TD_BF16]   = { 2, "bf16",    "BF16" },
    [TD_I8]     = { 1, "i8",      "I8" },
    [TD_U8]     = { 1, "u8",      "U8" },
    [TD_F8E4M3] = { 1, "f8_e4m3", "F8_E4M3" },
    [TD_I64]    = { 8, "i64",     "I64" },
    [TD_I32]    = { 4, "i32",     "I32" },
    [TD_F64]    = { 8, "f64",     "F64" },
    [TD_BOOL]   = { 1, "bool",    "BOOL" },
};

size_t td_dtype_size(td_dtype t)
{
    return (unsigned)t < TD_DTYPE_COUNT ? dtype_info[t].size : 0;
}

const char *td_dtype_name(td_dtype t)
{
    return (unsigned)t < TD_DTYPE_COUNT ? dtype_info[t].name : "?";
}

const char *td_dtype_safetensors_name(td_dtype t)
{
    return (unsigned)t < TD_DTYPE_COUNT ? dtype_info[t].st : "?";
}

int td_dtype_from_safetensors(const char *s)
{
    for (int i = 0; i < TD_DTYPE_COUNT; i++)
        if (!strcmp(s, dtype_info[i].st))
            return i;
    return -1;
}

float td_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    float f;

    if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24, exact in f32 */
        f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    if (exp == 31)
        u = sign | 0x7f800000u | (man << 13);
    else
        u = sign | ((exp + 112) << 23) | (man << 13);
    memcpy(&f, &u, 4);
    return f;
}

uint16_t td_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t absu = u & 0x7fffffffu;

    if (absu > 0x7f800000u)
        return sign | 0x7e00;                       /* NaN */
    if (absu >= 0x477ff000u)                        /* rounds to >= 65536 */
        return sign | 0x7c00;                       /* inf */
    if (absu < 0x38800000u) {                       /* below 2^-14: subnormal */
        float a;
        memcpy(&a, &absu, 4);
        /* scale so one f16 subnormal ulp is 1.0, then round to nearest even */
        return sign | (uint16_t)nearbyintf(a * 16777216.0f);
    }
    uint32_t r = absu + 0xfffu + ((absu >> 13) & 1u);
    return sign | (uint16_t)((r - 0x38000000u) >> 13);
}

float td_f8e4m3_to_f32(uint8_t v)
{
    /* e4m3fn: bias 7, no infinities, 0x7f/0xff are NaN */
    int sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
    float f;
    if (exp == 15 && man == 7)
        return NAN;
    if (exp == 0)
        f = ldexpf((float)man, -9);
    else
        f = ldexpf(1.0f + man / 8.0f, exp - 7);
    return sign ? -f : f;
}

void td_to_f32(td_dtype t, const void *src, float *dst, size_t n)
{
    size_t i;
    switch (t) {
    case TD_F32:    memcpy(dst, src, n * 4); break;
    case TD_F16:    for (i = 0; i < n; i++) dst[i] = td_f16_to_f32(((const uint16_t *)src)[i]); break;
    case TD_BF16:   for (i = 0; i < n; i++) dst[i] = td_bf16_to_f32(((const uint16_t *)src)[i]); break;
    case TD_I8:     for (i = 0; i < n; i++) dst[i] = ((const int8_t *)src)[i]; break;
    case TD_U8:
    case TD_BOOL:   for (i = 0; i < n; i++) dst[i] = ((const uint8_t *)src)[i]; break;
    case TD_F8E4M3: for (i = 0; i < n; i++) dst[i] = td_f8e4m3_to_f32(((const uint8_t *)src)[i]); break;
    case TD_I64:    for (i = 0; i < n; i++) dst[i] = (float)((const int64_t *)src)[i]; break;
    case TD_I32:    for (i = 0; i < n; i++) dst[i] = (float)((const int32_t *)src)[i]; break;
    case TD_F64:    for (i = 0; i < n; i++) dst[i] = (float)((const double *)src)[i]; break;
    default: break;
    }
}

void td_from_f32(td_dtype t, const float *src, void *dst, size_t n)
{
    size_t i;
    switch (t) {
    case TD_F32:  memcpy(dst, src, n * 4); break;
    case TD_F16:  for (i = 0; i < n; i++) ((uint16_t *)dst)[i] = td_f32_to_f16(src[i]); break;
    case TD_BF16: for (i = 0; i < n; i++) ((uint16_t *)dst)[i] = td_f32_to_bf16(src[i]); break;
    default: break;
    }
}
