// Backward rules of linear, matmul and the embedding lookup.
#include "autograd/functions.h"
#include "autograd/kernels/kernels.h"
#include "ops/ops.h"

namespace diffuse::autograd {

namespace {
using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

// The weight as f32 (inference weights may be f16/bf16; their input gradient still exists).
Tensor f32_weight(const Tensor& w) {
  return w.dtype() == DType::F32 ? w : w.to(DType::F32);
}
}  // namespace

Tensor linear(const Tensor& x, const Tensor& w_, const Tensor& b) {
  // autocast: the bf16 copy runs the product (and the input gradient); w_ gets the gradient
  const Tensor w = autocast_bf16() && w_.dtype() == DType::F32 ? w_.to(DType::BF16) : w_;
  Tensor out = ops::linear(x, w, b);
  if (!needs_graph(x, w_, b)) return out;
  return record("linear", out, {&x, &w_, &b},
                [x = detach(x), w = detach(w)](const Tensor& g, const Needs& n) -> Grads {
                  const int64_t in = w.size(1), nout = w.size(0);
                  const Tensor g2 = g.reshape({-1, nout});  // [..., out] -> [(...), out]
                  Grads r(3);
                  if (n[0])
                    r[0] = ops::matmul(g2, f32_weight(w)).view(x.shape());  // [N, out] @ [out, in]
                  if (n[1])                                                 // [out, N] @ [N, in]
                    r[1] = ops::matmul(g2.transpose(0, 1), x.reshape({-1, in}));
                  if (n[2]) r[2] = kernels::sum_to(g2, {nout});
                  return r;
                });
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  Tensor out = ops::matmul(a, b);
  if (!needs_graph(a, b)) return out;
  return record("matmul", out, {&a, &b},
                [a = detach(a), b = detach(b)](const Tensor& g, const Needs& n) -> Grads {
                  Grads r(2);
                  // da = g b^T, db = a^T g, summed over broadcast batch dims
                  if (n[0]) r[0] = kernels::sum_to(ops::matmul(g, b.transpose(-1, -2)), a.shape());
                  if (n[1]) r[1] = kernels::sum_to(ops::matmul(a.transpose(-1, -2), g), b.shape());
                  return r;
                });
}

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  Tensor out = ops::embedding(weight, ids);
  if (!needs_graph(weight)) return out;
  return record(
      "embedding", out, {&weight},
      [ids = detach(ids), vocab = weight.size(0)](const Tensor& g, const Needs&) -> Grads {
        return {kernels::embedding_backward(ids, g, vocab)};
      });
}

}  // namespace diffuse::autograd
