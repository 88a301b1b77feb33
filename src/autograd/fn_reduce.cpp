// Reductions and losses.
#include <algorithm>

#include "autograd/functions.h"
#include "autograd/kernels/kernels.h"
#include "ops/ops.h"

namespace diffuse::autograd {

namespace {
using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

// x's shape with 1 at each of `dims`.
Shape kept_shape(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  Shape s = x.shape();
  for (int64_t d : dims) {
    const int64_t w = d < 0 ? d + x.dim() : d;
    DF_CHECK(w >= 0 && w < x.dim(), op, ": dim ", d, " out of range for ", x.desc());
    s[size_t(w)] = 1;
  }
  return s;
}

Shape squeezed(const Shape& s, const Tensor& x, const std::vector<int64_t>& dims) {
  Shape out;
  for (int64_t i = 0; i < x.dim(); ++i) {
    bool drop = false;
    for (int64_t d : dims) drop = drop || (d < 0 ? d + x.dim() : d) == i;
    if (!drop) out.push_back(s[size_t(i)]);
  }
  return out;
}
}  // namespace

Tensor sum_to(const Tensor& x, const Shape& shape) {
  DF_CHECK(x.dtype() == DType::F32, "sum_to: x must be f32, got ", x.desc());
  DF_CHECK(shape.size() <= size_t(x.dim()), "sum_to: cannot sum ", x.desc(), " to ",
           shape_str(shape));
  for (size_t i = 0; i < shape.size(); ++i) {
    const int64_t xd = x.shape()[size_t(x.dim()) - shape.size() + i];
    DF_CHECK(shape[i] == xd || shape[i] == 1, "sum_to: cannot sum ", x.desc(), " to ",
             shape_str(shape));
  }
  if (x.shape() == shape) return x;
  Tensor out = kernels::sum_to(x, shape);
  if (!needs_graph(x)) return out;
  return record("sum_to", out, {&x}, [xs = x.shape()](const Tensor& g, const Needs&) -> Grads {
    return {kernels::broadcast_to(g, xs)};
  });
}

Tensor sum(const Tensor& x) {
  return sum_to(x, {});
}

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const Shape k = kept_shape(x, dims, "sum");
  Tensor s = sum_to(x, k);
  return keepdim ? s : reshape(s, squeezed(k, x, dims));
}

Tensor mean(const Tensor& x) {
  return scale(sum(x), 1.f / float(std::max<int64_t>(x.numel(), 1)));
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const Shape k = kept_shape(x, dims, "mean");
  const int64_t n = x.numel() / std::max<int64_t>(shape_numel(k), 1);
  return scale(sum(x, dims, keepdim), 1.f / float(std::max<int64_t>(n, 1)));
}

Tensor mse_loss(const Tensor& input, const Tensor& target) {
  DF_CHECK(input.shape() == target.shape(), "mse_loss: input ", input.desc(), " and target ",
           target.desc(), " differ in shape");
  return mean(square(sub(input, target)));
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets) {
  DF_CHECK(logits.dim() == 2, "cross_entropy: logits must be [N, C], got ", logits.desc());
  DF_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0) &&
               (targets.dtype() == DType::I64 || targets.dtype() == DType::I32),
           "cross_entropy: targets must be integer [", logits.size(0), "], got ", targets.desc());
  const int64_t n = logits.size(0), c = logits.size(1);
  const Tensor t = targets.to(DType::I64).contiguous();
  std::vector<int64_t> ids(t.data<int64_t>(), t.data<int64_t>() + n);
  for (int64_t id : ids)
    DF_CHECK(id >= 0 && id < c, "cross_entropy: target ", id, " out of range for ", c, " classes");
  const Tensor lp = log_softmax(logits);
  // The picked log-probabilities, averaged: a selection whose gradient is -1/N at each target.
  const Tensor lpc = lp.contiguous();
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s -= double(lpc.data<float>()[i * c + ids[size_t(i)]]);
  Tensor out = Tensor::full({}, float(s / double(std::max<int64_t>(n, 1))));
  if (!needs_graph(lp)) return out;
  return record("nll_loss", out, {&lp}, [ids, n, c](const Tensor& g, const Needs&) -> Grads {
    Tensor d = Tensor::zeros({n, c});
    const float v = -g.item() / float(std::max<int64_t>(n, 1));
    for (int64_t i = 0; i < n; ++i) d.data<float>()[i * c + ids[size_t(i)]] = v;
    return {d};
  });
}

}  // namespace diffuse::autograd
