// Dispatch of linear and matmul: shape checks, broadcasting of the batch dims, and the layout
// preparation oneDNN needs (each matrix with a unit stride in one of its two last dims).
#include "ops/cpu/kernels.h"
#include "ops/ops.h"
#include "ops/profile.h"
#include "ops/shape_util.h"

namespace diffuse::ops {

namespace {

// A matrix operand [..., R, C] that oneDNN can read: unit stride in one of the last two dims.
Tensor matrix_operand(const Tensor& t) {
  const int64_t n = t.dim();
  const bool ok = t.strides()[size_t(n - 1)] == 1 || t.shape()[size_t(n - 1)] == 1 ||
                  t.strides()[size_t(n - 2)] == 1 || t.shape()[size_t(n - 2)] == 1;
  return ok ? t : t.contiguous();
}

// Prepends size-1 dims up to `nd` dims: [..] -> [1, .., 1, ..]
Tensor pad_dims(Tensor t, int64_t nd) {
  while (t.dim() < nd) t = t.unsqueeze(0);
  return t;
}

// Drops leading dims (all of size 1) down to `nd` dims.
Tensor drop_leading(Tensor t, int64_t nd) {
  while (t.dim() > nd) t = t.select(0, 0);
  return t;
}

// out [..., M, N] = a [..., M, K] @ b [..., K, N] (+ bias [N]); a/b already broadcast-compatible.
Tensor run_matmul(const char* op, const Tensor& a, const Tensor& b, const Tensor& bias,
                  const Shape& out_shape) {
  Tensor out = Tensor::empty(out_shape);
  if (out.numel() == 0) return out;
  const int64_t k = a.shape().back();
  if (k == 0) {  // empty reduction: bias or zeros
    Tensor z = Tensor::zeros(out_shape);
    return bias.defined() ? add(z, bias) : z;
  }
  ProfileScope prof(op, 2.0 * double(out.numel()) * double(k));
  const int64_t nd = int64_t(out_shape.size());
  Tensor a2 = matrix_operand(a), b2 = matrix_operand(b);
  bool b_batched = false;
  for (int64_t d = 0; d + 2 < b2.dim(); ++d) b_batched |= b2.shape()[size_t(d)] != 1;
  if (!b_batched && nd > 2 && a2.is_contiguous()) {
    // One GEMM over all rows: a [..., M, K] -> [(...) M, K], b [1.., K, N] -> [K, N]
    Tensor out2 = out.view({-1, out_shape.back()});
    auto st = cpu::matmul(a2.view({-1, k}), drop_leading(b2, 2), bias, out2);
    DF_CHECK(st.empty(), op, ": ", st);
    return out;
  }
  auto st = cpu::matmul(pad_dims(a2, nd), pad_dims(b2, nd), bias, out);
  DF_CHECK(st.empty(), op, ": ", st);
  return out;
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  check_f32(x, "linear", "x");
  check_weight(w, "linear");
  DF_CHECK(w.dim() == 2, "linear: weight must be [out, in], got ", w.desc());
  DF_CHECK(x.dim() >= 1 && x.shape().back() == w.shape()[1], "linear: input ", x.desc(),
           " does not match weight ", w.desc(), " (expected last dim ", w.shape()[1], ")");
  Tensor bias;
  if (b.defined()) {
    check_f32(b, "linear", "bias");
    DF_CHECK(b.dim() == 1 && b.shape()[0] == w.shape()[0], "linear: bias ", b.desc(),
             " does not match weight ", w.desc());
    bias = b.contiguous();
  }
  Shape out_shape = x.shape();
  out_shape.back() = w.shape()[0];  // [..., in] -> [..., out]
  if (bf16_products(w)) {  // inference weights: bf16 products
    const int64_t k = w.shape()[1];
    Tensor x2 = x.contiguous().view({-1, k});  // [..., in] -> [(...), in]
    Tensor out = Tensor::empty({x2.shape()[0], w.shape()[0]});
    if (out.numel() == 0) return out.view(out_shape);
    if (k == 0)
      return run_matmul("linear", x2, w.to(DType::F32).transpose(0, 1), bias, out.shape())
          .view(out_shape);
    ProfileScope prof("linear", 2.0 * double(out.numel()) * double(k));
    auto st = cpu::linear_lowp(x2, w.contiguous(), bias, out);
    DF_CHECK(st.empty(), "linear: ", st);
    return out.view(out_shape);
  }
  Tensor x2 = x.dim() == 1 ? x.unsqueeze(0) : x;  // [in] -> [1, in]
  Shape out2 = x2.shape();
  out2.back() = w.shape()[0];
  Tensor wt = w.transpose(0, 1);  // [out, in] -> [in, out], a strided view
  return run_matmul("linear", x2, wt, bias, out2).view(out_shape);
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_f32(a, "matmul", "a");
  check_f32(b, "matmul", "b");
  DF_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: operands need at least 2 dims, got ", a.desc(),
           " and ", b.desc());
  const int64_t m = a.shape()[size_t(a.dim() - 2)], k = a.shape().back();
  const int64_t kb = b.shape()[size_t(b.dim() - 2)], n = b.shape().back();
  DF_CHECK(k == kb, "matmul: inner dims differ: ", a.desc(), " x ", b.desc());
  const Shape batch_a(a.shape().begin(), a.shape().end() - 2);
  const Shape batch_b(b.shape().begin(), b.shape().end() - 2);
  Shape out_shape = broadcast_shapes(batch_a, batch_b, "matmul");
  out_shape.push_back(m);
  out_shape.push_back(n);
  return run_matmul("matmul", a, b, Tensor(), out_shape);
}

}  // namespace diffuse::ops
