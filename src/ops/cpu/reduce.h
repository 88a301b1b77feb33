// Row reductions shared by the normalization, softmax and attention kernels. Sums run in
// double over several independent lanes (so the compiler vectorizes them without reassociating
// a single float accumulator), which keeps mean/variance accurate on long rows.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "ops/cpu/vec_math.h"

namespace diffuse::ops::cpu {

inline double row_sum(const float* x, int64_t n) {
  double acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += double(x[i + l]);
  double s = 0;
  for (; i < n; ++i) s += double(x[i]);
  for (int l = 0; l < 8; ++l) s += acc[l];
  return s;
}

// sum over the row of (x - mean)^2
inline double row_sq_dev(const float* x, int64_t n, double mean) {
  double acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) {
      const double d = double(x[i + l]) - mean;
      acc[l] += d * d;
    }
  double s = 0;
  for (; i < n; ++i) {
    const double d = double(x[i]) - mean;
    s += d * d;
  }
  for (int l = 0; l < 8; ++l) s += acc[l];
  return s;
}

inline float row_max(const float* x, int64_t n) {
  float acc[16];
  std::fill(acc, acc + 16, -INFINITY);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) acc[l] = acc[l] > x[i + l] ? acc[l] : x[i + l];
  float m = -INFINITY;
  for (; i < n; ++i) m = m > x[i] ? m : x[i];
  for (int l = 0; l < 16; ++l) m = m > acc[l] ? m : acc[l];
  return m;
}

// Numerically stable softmax of one row (in and out may alias). A row of all -inf yields 0s.
inline void softmax_row(const float* in, float* out, int64_t n) {
  const float m = row_max(in, n);
  if (m == -INFINITY) {
    std::fill(out, out + n, 0.f);
    return;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = exp_f(in[i] - m);
  const float inv = float(1.0 / row_sum(out, n));
  for (int64_t i = 0; i < n; ++i) out[i] *= inv;
}

}  // namespace diffuse::ops::cpu
