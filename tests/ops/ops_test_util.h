// Helpers for the op tests: seeded random tensors, strided element access in double, and a
// comparison of an op's output against a double-precision reference.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/tensor.h"

namespace diffuse::test {

inline Tensor randn(const Shape& shape, uint32_t seed, float stddev = 1.f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.f, stddev);
  std::vector<float> v(size_t(shape_numel(shape)));
  for (float& x : v) x = dist(gen);
  return Tensor::from_vector(v, shape);
}

// The elements of any (strided) f32 tensor in logical row-major order, as doubles.
inline std::vector<double> to_double(const Tensor& t) {
  std::vector<float> f = t.to_float_vector();
  return std::vector<double>(f.begin(), f.end());
}

// A tensor holding the same values as `t` but laid out non-contiguously: stored permuted as
// `order`, then viewed back. Its values read the same; its strides differ.
inline Tensor scrambled(const Tensor& t, const std::vector<int64_t>& order) {
  std::vector<int64_t> inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i) inverse[size_t(order[i])] = int64_t(i);
  return t.permute(order).contiguous().permute(inverse);
}

// max |out - ref| / max(|ref|_inf, floor): a per-element relative error, robust to zeros.
inline double max_rel_error(const Tensor& out, const std::vector<double>& ref,
                            double floor = 1e-30) {
  std::vector<float> o = out.to_float_vector();
  EXPECT_EQ(o.size(), ref.size());
  double scale = floor, err = 0;
  for (double r : ref) scale = std::max(scale, std::abs(r));
  for (size_t i = 0; i < o.size() && i < ref.size(); ++i)
    err = std::max(err, std::abs(double(o[i]) - ref[i]));
  return err / scale;
}

}  // namespace diffuse::test

// Output shape must equal `shape` and every element must be within tol * max|ref| of ref.
#define EXPECT_MATCHES_REF(out_, shape_, ref_, tol_)                    \
  do {                                                                  \
    ASSERT_EQ((out_).shape(), (shape_)) << (out_).desc();               \
    const double _e = ::diffuse::test::max_rel_error((out_), (ref_));   \
    EXPECT_LE(_e, (tol_)) << "max error relative to max |ref|: " << _e; \
  } while (0)
