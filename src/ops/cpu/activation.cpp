// Activation kernels (f32). GELU is the exact erf form, as torch's default (erf_f: within
// 5e-7 of erf, vectorizable); the sigmoid-based ones use the vectorizable exp_f.
#include <cmath>

#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"
#include "ops/cpu/vec_math.h"

namespace diffuse::ops::cpu {

void activation(Activation act, const Tensor& x, Tensor& out) {
  switch (act) {
    case Activation::Gelu:
      map_unary(x, out, [](float v) {
        constexpr float kInvSqrt2 = 0.70710678118654752440f;
        return 0.5f * v * (1.f + erf_f(v * kInvSqrt2));
      });
      break;
    case Activation::GeluTanh:
      // 0.5 v (1 + tanh(u)) == v * sigmoid(2u), u = sqrt(2/pi) (v + 0.044715 v^3)
      map_unary(x, out, [](float v) {
        constexpr float kTwoSqrt2OverPi = 1.59576912160573071176f;
        return v * sigmoid_f(kTwoSqrt2OverPi * (v + 0.044715f * v * v * v));
      });
      break;
    case Activation::QuickGelu:
      map_unary(x, out, [](float v) { return v * sigmoid_f(1.702f * v); });
      break;
    case Activation::Silu:
      map_unary(x, out, [](float v) { return silu_f(v); });
      break;
    case Activation::Sigmoid:
      map_unary(x, out, [](float v) { return sigmoid_f(v); });
      break;
  }
}

}  // namespace diffuse::ops::cpu
