// Binary and scalar elementwise kernels (f32, numpy broadcasting).
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"

namespace diffuse::ops::cpu {

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  switch (op) {
    case BinaryOp::Add:
      map_binary(a, b, out, [](float x, float y) { return x + y; });
      break;
    case BinaryOp::Sub:
      map_binary(a, b, out, [](float x, float y) { return x - y; });
      break;
    case BinaryOp::Mul:
      map_binary(a, b, out, [](float x, float y) { return x * y; });
      break;
    case BinaryOp::Div:
      map_binary(a, b, out, [](float x, float y) { return x / y; });
      break;
  }
}

void axpby(const Tensor& x, float alpha, const Tensor& y, float beta, Tensor& out) {
  map_binary(x, y, out, [alpha, beta](float u, float v) { return alpha * u + beta * v; });
}

void affine_scalar(const Tensor& x, float s, float t, Tensor& out) {
  if (t == 0.f) {
    map_unary(x, out, [s](float u) { return u * s; });
  } else if (s == 1.f) {
    map_unary(x, out, [t](float u) { return u + t; });
  } else {
    map_unary(x, out, [s, t](float u) { return u * s + t; });
  }
}

}  // namespace diffuse::ops::cpu
