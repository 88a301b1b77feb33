// Views and concatenation. The forward is core::Tensor's view (no copy); the backward maps the
// gradient back to the input's shape: reshaped, permuted back, or padded with zeros (slices).
#include <numeric>

#include "autograd/functions.h"
#include "ops/ops.h"

namespace diffuse::autograd {

namespace {
using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

int64_t wrap(int64_t d, int64_t n) {
  return d < 0 ? d + n : d;
}

// The gradient of x's slice [start, end) along dim: g placed there, zeros elsewhere.
Tensor unslice(const Tensor& g, const Shape& x_shape, int64_t dim, int64_t start, int64_t end) {
  std::vector<Tensor> parts;
  auto zeros = [&](int64_t len) {
    Shape s = g.shape();
    s[size_t(dim)] = len;
    return Tensor::zeros(s);
  };
  if (start > 0) parts.push_back(zeros(start));
  parts.push_back(g);
  if (end < x_shape[size_t(dim)]) parts.push_back(zeros(x_shape[size_t(dim)] - end));
  return parts.size() == 1 ? g : ops::cat(parts, dim);
}

Tensor reshape_back(const char* name, const Tensor& x, Tensor out) {
  if (!needs_graph(x)) return plain(std::move(out));
  return record(name, out, {&x},
                [s = x.shape()](const Tensor& g, const Needs&) -> Grads { return {g.reshape(s)}; });
}
}  // namespace

Tensor view(const Tensor& x, const Shape& shape) {
  return reshape_back("view", x, x.view(shape));
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  return x.is_contiguous() ? view(x, shape) : view(contiguous(x), shape);
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  return reshape_back("unsqueeze", x, x.unsqueeze(dim));
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& order) {
  Tensor out = x.permute(order);
  if (!needs_graph(x)) return plain(std::move(out));
  std::vector<int64_t> inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i) inverse[size_t(wrap(order[i], x.dim()))] = int64_t(i);
  return record("permute", out, {&x},
                [inverse](const Tensor& g, const Needs&) -> Grads { return {g.permute(inverse)}; });
}

Tensor transpose(const Tensor& x, int64_t a, int64_t b) {
  Tensor out = x.transpose(a, b);
  if (!needs_graph(x)) return plain(std::move(out));
  return record("transpose", out, {&x},
                [a, b](const Tensor& g, const Needs&) -> Grads { return {g.transpose(a, b)}; });
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end) {
  Tensor out = x.slice(dim, start, end);
  if (!needs_graph(x)) return plain(std::move(out));
  const int64_t d = wrap(dim, x.dim()), n = x.shape()[size_t(d)];
  const int64_t s = wrap(start, n), e = s + out.shape()[size_t(d)];
  return record("slice", out, {&x},
                [xs = x.shape(), d, s, e](const Tensor& g, const Needs&) -> Grads {
                  return {unslice(g, xs, d, s, e)};
                });
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  Tensor out = x.select(dim, index);
  if (!needs_graph(x)) return plain(std::move(out));
  const int64_t d = wrap(dim, x.dim()), i = wrap(index, x.shape()[size_t(d)]);
  return record("select", out, {&x},
                [xs = x.shape(), d, i](const Tensor& g, const Needs&) -> Grads {
                  return {unslice(g.unsqueeze(d), xs, d, i, i + 1)};
                });
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  Tensor out = x.contiguous();
  if (!needs_graph(x)) return plain(std::move(out));
  return record("contiguous", out, {&x},
                [](const Tensor& g, const Needs&) -> Grads { return {g}; });
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  Tensor out = ops::cat(xs, dim);
  bool any = false;
  for (const Tensor& t : xs) any = any || requires_grad(t);
  if (!any || !grad_enabled()) return out;
  std::vector<const Tensor*> inputs;
  std::vector<int64_t> sizes;
  for (const Tensor& t : xs) {
    inputs.push_back(&t);
    sizes.push_back(t.size(dim));
  }
  const int64_t d = wrap(dim, out.dim());
  return record("cat", out, inputs, [sizes, d](const Tensor& g, const Needs& n) -> Grads {
    Grads r(sizes.size());
    int64_t off = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (n[i]) r[i] = g.slice(d, off, off + sizes[i]);
      off += sizes[i];
    }
    return r;
  });
}

}  // namespace diffuse::autograd
