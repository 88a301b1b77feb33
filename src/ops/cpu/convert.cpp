// Conversions between f32 and the 16-bit float types, in parallel. f32 -> bf16 rounds to
// nearest even (the hardware's VCVTNE2PS2BF16 where the build targets AVX512_BF16).
#include <immintrin.h>

#include "core/half.h"
#include "core/parallel.h"
#include "ops/cpu/kernels.h"

namespace diffuse::ops::cpu {

namespace {

constexpr int64_t kGrain = 1 << 15;

void f32_to_bf16_run(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512BF16__) && defined(__AVX512F__)
  for (; i + 32 <= n; i += 32) {
    const __m512 lo = _mm512_loadu_ps(src + i), hi = _mm512_loadu_ps(src + i + 16);
    const __m512bh v = _mm512_cvtne2ps_pbh(hi, lo);
    _mm512_storeu_si512(reinterpret_cast<void*>(dst + i), reinterpret_cast<__m512i>(v));
  }
#endif
  for (; i < n; ++i) dst[i] = float_to_bf16(src[i]);
}

}  // namespace

void f32_to_bf16_serial(const float* src, uint16_t* dst, int64_t n) {
  f32_to_bf16_run(src, dst, n);
}

void f32_to_bf16(const float* src, uint16_t* dst, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) { f32_to_bf16_run(src + b, dst + b, e - b); });
}

void half_to_f32(DType t, const uint16_t* src, float* dst, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    if (t == DType::BF16) {
      for (int64_t i = b; i < e; ++i) dst[i] = bf16_to_float(src[i]);
    } else {
      int64_t i = b;
#if defined(__F16C__) && defined(__AVX__)
      for (; i + 8 <= e; i += 8)
        _mm256_storeu_ps(
            dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
      for (; i < e; ++i) dst[i] = f16_to_float(src[i]);
    }
  });
}

}  // namespace diffuse::ops::cpu
