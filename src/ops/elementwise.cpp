// Dispatch of the binary and scalar elementwise ops.
#include "ops/cpu/kernels.h"
#include "ops/ops.h"
#include "ops/profile.h"
#include "ops/shape_util.h"

namespace diffuse::ops {

namespace {

// Operands may be f16/bf16 (e.g. an embedding table held in 16 bits): they are widened.
Tensor binary(cpu::BinaryOp op, const char* name, const Tensor& a_, const Tensor& b_) {
  const Tensor a = as_f32(a_, name, "a"), b = as_f32(b_, name, "b");
  ProfileScope prof(name);
  Tensor out = Tensor::empty(broadcast_shapes(a.shape(), b.shape(), name));
  cpu::binary(op, a, b, out);
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  return binary(cpu::BinaryOp::Add, "add", a, b);
}
Tensor sub(const Tensor& a, const Tensor& b) {
  return binary(cpu::BinaryOp::Sub, "sub", a, b);
}
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary(cpu::BinaryOp::Mul, "mul", a, b);
}
Tensor div(const Tensor& a, const Tensor& b) {
  return binary(cpu::BinaryOp::Div, "div", a, b);
}

Tensor scale(const Tensor& x, float s) {
  check_f32(x, "scale", "x");
  Tensor out = Tensor::empty(x.shape());
  cpu::affine_scalar(x, s, 0.f, out);
  return out;
}

Tensor add_scalar(const Tensor& x, float s) {
  check_f32(x, "add_scalar", "x");
  Tensor out = Tensor::empty(x.shape());
  cpu::affine_scalar(x, 1.f, s, out);
  return out;
}

Tensor axpby(const Tensor& x, float a, const Tensor& y, float b) {
  check_f32(x, "axpby", "x");
  check_f32(y, "axpby", "y");
  DF_CHECK(x.shape() == y.shape(), "axpby: shapes ", shape_str(x.shape()), " and ",
           shape_str(y.shape()), " differ");
  Tensor out = Tensor::empty(x.shape());
  cpu::axpby(x, a, y, b, out);
  return out;
}

}  // namespace diffuse::ops
