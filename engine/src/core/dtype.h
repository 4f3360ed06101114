/*
 * Element types, as stored in weight files and as computed with.
 * Conversions are scalar and exact where the format allows (bf16/f16/f8 ->
 * f32 is exact; f32 -> bf16/f16 rounds to nearest even).
 */
#ifndef TD_CORE_DTYPE_H
#define TD_CORE_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum td_dtype {
    TD_F32 = 0,
    TD_F16,
    TD_BF16,
    TD_I8,
    TD_U8,
    TD_F8E4M3,   /* read only */
    TD_I64,      /* read only */
    TD_I32,
    TD_F64,
    TD_BOOL,
    TD_DTYPE_COUNT
} td_dtype;

size_t td_dtype_size(td_dtype t);
/* Short name used by `turbodiff inspect`: f32 f16 bf16 i8 u8 f8_e4m3 i64 i32 f64 bool. */
const char *td_dtype_name(td_dtype t);
/* Parse a safetensors dtype string ("F32", "BF16", "F8_E4M3", ...). -1 if unknown. */
int td_dtype_from_safetensors(const char *s);
/* The safetensors dtype string of t ("F32", "BF16", "I8", ...). */
const char *td_dtype_safetensors_name(td_dtype t);

static inline float td_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t td_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)   /* NaN: keep it quiet and NaN */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);       /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float td_f16_to_f32(uint16_t h);
uint16_t td_f32_to_f16(float f);
float td_f8e4m3_to_f32(uint8_t v);

/* Widen n elements of any float or integer dtype to f32. */
void td_to_f32(td_dtype t, const void *src, float *dst, size_t n);
/* Narrow n f32 values into a float dtype (f32, f16, bf16). */
void td_from_f32(td_dtype t, const float *src, void *dst, size_t n);

#endif
