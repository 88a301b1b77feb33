// Elementary functions written so that GCC vectorizes the loops that call them (glibc's expf
// is a scalar call). exp_f follows Cephes' expf: n = round(x log2 e), r = x - n ln2 in two
// parts, a degree-6 polynomial on |r| <= ln2/2, then scaling by 2^n applied as two factors so
// that overflow gives inf and underflow gives (gradual) zeros; relative error ~2 ulp.
#pragma once
#include <bit>
#include <cstdint>

namespace diffuse::ops::cpu {

inline float exp_f(float x) {
  // Clamp to a range where n fits comfortably; results there are already 0 or inf.
  x = x < -110.f ? -110.f : x;
  x = x > 90.f ? 90.f : x;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kRound = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * kLog2e + kRound) - kRound;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  const float z = r * r;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.f;
  const int32_t ni = int32_t(n);
  const int32_t n1 = ni >> 1, n2 = ni - n1;  // each within [-80, 80]
  const float s1 = std::bit_cast<float>((n1 + 127) << 23);
  const float s2 = std::bit_cast<float>((n2 + 127) << 23);
  return y * s1 * s2;
}

// erf after Abramowitz & Stegun 7.1.26 (absolute error 1.5e-7, 5e-7 in float), vectorizable.
inline float erf_f(float x) {
  const float a = x < 0.f ? -x : x;
  const float t = 1.f / (1.f + 0.3275911f * a);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const float y = 1.f - p * t * exp_f(-a * a);
  return x < 0.f ? -y : y;
}

inline float sigmoid_f(float x) {
  return 1.f / (1.f + exp_f(-x));
}
inline float silu_f(float x) {
  return x / (1.f + exp_f(-x));
}

}  // namespace diffuse::ops::cpu
