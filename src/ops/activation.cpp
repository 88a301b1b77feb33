// Dispatch of the activation functions.
#include "ops/cpu/kernels.h"
#include "ops/ops.h"
#include "ops/profile.h"
#include "ops/shape_util.h"

namespace diffuse::ops {

namespace {

Tensor activation(cpu::Activation act, const char* name, const Tensor& x) {
  check_f32(x, name, "x");
  Tensor out = Tensor::empty(x.shape());
  ProfileScope prof(name);
  cpu::activation(act, x, out);
  return out;
}

}  // namespace

Tensor gelu(const Tensor& x) {
  return activation(cpu::Activation::Gelu, "gelu", x);
}
Tensor gelu_tanh(const Tensor& x) {
  return activation(cpu::Activation::GeluTanh, "gelu_tanh", x);
}
Tensor quick_gelu(const Tensor& x) {
  return activation(cpu::Activation::QuickGelu, "quick_gelu", x);
}
Tensor silu(const Tensor& x) {
  return activation(cpu::Activation::Silu, "silu", x);
}
Tensor sigmoid(const Tensor& x) {
  return activation(cpu::Activation::Sigmoid, "sigmoid", x);
}

}  // namespace diffuse::ops
