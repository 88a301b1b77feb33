// Dispatch of the shape ops (cat).
#include "ops/cpu/kernels.h"
#include "ops/ops.h"
#include "ops/profile.h"
#include "ops/shape_util.h"

namespace diffuse::ops {

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  DF_CHECK(!xs.empty(), "cat: no tensors");
  for (const Tensor& t : xs) DF_CHECK(t.defined(), "cat: undefined tensor in the list");
  const Tensor& first = xs[0];
  const int64_t nd = first.dim();
  DF_CHECK(nd >= 1, "cat: zero-dim tensor ", first.desc());
  if (dim < 0) dim += nd;
  DF_CHECK(dim >= 0 && dim < nd, "cat: dim out of range for ", first.desc());
  Shape out_shape = first.shape();
  out_shape[size_t(dim)] = 0;
  std::vector<Tensor> parts;
  parts.reserve(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& t = xs[i];
    DF_CHECK(t.dtype() == first.dtype(), "cat: tensor ", i, " is ", t.desc(), ", tensor 0 is ",
             first.desc());
    bool ok = t.dim() == nd;
    for (int64_t d = 0; ok && d < nd; ++d)
      ok = d == dim || t.shape()[size_t(d)] == first.shape()[size_t(d)];
    DF_CHECK(ok, "cat: tensor ", i, " ", t.desc(), " does not match tensor 0 ", first.desc(),
             " outside dim ", dim);
    out_shape[size_t(dim)] += t.shape()[size_t(dim)];
    parts.push_back(t.contiguous());
  }
  Tensor out = Tensor::empty(out_shape, first.dtype());
  ProfileScope prof("cat");
  cpu::cat(parts, dim, out);
  return out;
}

}  // namespace diffuse::ops
