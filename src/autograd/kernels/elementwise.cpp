// Elementwise kernels of the backward rules: in-place accumulation, unary math, activation
// derivatives. Inputs are made contiguous first; loops split over all cores.
#include <algorithm>
#include <cmath>

#include "autograd/kernels/kernels.h"
#include "core/parallel.h"

namespace diffuse::autograd::kernels {

namespace {

constexpr int64_t kGrain = 16384;

// out[i] = fn(a[i]) over contiguous f32 buffers.
template <typename Fn>
Tensor map1(const Tensor& a_, Fn fn) {
  const Tensor a = a_.contiguous();
  Tensor out = Tensor::empty(a.shape());
  const float* pa = a.data<float>();
  float* po = out.data<float>();
  parallel_for(a.numel(), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) po[i] = fn(pa[i]);
  });
  return out;
}

// out[i] = fn(a[i], b[i]) over same-shape tensors.
template <typename Fn>
Tensor map2(const Tensor& a_, const Tensor& b_, Fn fn) {
  const Tensor a = a_.contiguous(), b = b_.contiguous();
  Tensor out = Tensor::empty(a.shape());
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
  parallel_for(a.numel(), kGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) po[i] = fn(pa[i], pb[i]);
  });
  return out;
}

inline float sigmoid(float x) {
  return 1.f / (1.f + std::exp(-x));
}

}  // namespace

void add_inplace(Tensor& dst, const Tensor& src_) {
  const Tensor src = src_.contiguous();
  float* d = dst.data<float>();
  const float* s = src.data<float>();
  parallel_for(dst.numel(), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) d[i] += s[i];
  });
}

void scale_inplace(Tensor& dst, float s) {
  float* d = dst.data<float>();
  parallel_for(dst.numel(), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) d[i] *= s;
  });
}

double sum_squares(const Tensor& x_) {
  const Tensor x = x_.contiguous();
  const float* p = x.data<float>();
  double s = 0;
  for (int64_t i = 0, n = x.numel(); i < n; ++i) s += double(p[i]) * double(p[i]);
  return s;
}

Tensor unary(Unary op, const Tensor& x) {
  switch (op) {
    case Unary::Exp:
      return map1(x, [](float v) { return std::exp(v); });
    case Unary::Log:
      return map1(x, [](float v) { return std::log(v); });
    case Unary::Sqrt:
      return map1(x, [](float v) { return std::sqrt(v); });
    case Unary::Square:
      return map1(x, [](float v) { return v * v; });
    case Unary::Neg:
      return map1(x, [](float v) { return -v; });
    case Unary::Reciprocal:
      return map1(x, [](float v) { return 1.f / v; });
  }
  return Tensor();
}

Tensor clamp(const Tensor& x, float lo, float hi) {
  return map1(x, [=](float v) { return std::min(hi, std::max(lo, v)); });
}

Tensor clamp_backward(const Tensor& x, float lo, float hi, const Tensor& g) {
  return map2(x, g, [=](float v, float gv) { return v >= lo && v <= hi ? gv : 0.f; });
}

Tensor activation_backward(Act act, const Tensor& x, const Tensor& g) {
  switch (act) {
    case Act::Gelu:
      return map2(x, g, [](float v, float gv) {
        const float cdf = 0.5f * (1.f + std::erf(v * float(M_SQRT1_2)));
        const float pdf = std::exp(-0.5f * v * v) * float(0.5 * M_2_SQRTPI * M_SQRT1_2);
        return gv * (cdf + v * pdf);
      });
    case Act::GeluTanh:
      return map2(x, g, [](float v, float gv) {
        const float k = float(M_2_SQRTPI * M_SQRT1_2);  // sqrt(2 / pi)
        const float t = std::tanh(k * (v + 0.044715f * v * v * v));
        const float du = k * (1.f + 3.f * 0.044715f * v * v);
        return gv * (0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * du);
      });
    case Act::QuickGelu:
      return map2(x, g, [](float v, float gv) {
        const float s = sigmoid(1.702f * v);
        return gv * (s + 1.702f * v * s * (1.f - s));
      });
    case Act::Silu:
      return map2(x, g, [](float v, float gv) {
        const float s = sigmoid(v);
        return gv * s * (1.f + v * (1.f - s));
      });
    case Act::Sigmoid:
      return map2(x, g, [](float v, float gv) {
        const float s = sigmoid(v);
        return gv * s * (1.f - s);
      });
  }
  return Tensor();
}

}  // namespace diffuse::autograd::kernels
