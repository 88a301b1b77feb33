// Backward rules of layer norm, group norm and softmax.
#include "autograd/functions.h"
#include "autograd/kernels/kernels.h"
#include "ops/ops.h"

namespace diffuse::autograd {

namespace {
using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

Tensor group_norm_impl(const char* name, const Tensor& x, int64_t groups, const Tensor& weight,
                       const Tensor& bias, float eps, bool silu, Tensor out) {
  if (!needs_graph(x, weight, bias)) return out;
  return record(name, out, {&x, &weight, &bias},
                [x = detach(x), w = detach(weight), b = detach(bias), groups, eps, silu](
                    const Tensor& g, const Needs& n) -> Grads {
                  auto r = kernels::group_norm_backward(x, groups, w, b, eps, silu, g, n[0],
                                                        n[1] || n[2]);
                  return {r.dx, n[1] ? r.dweight : Tensor(), n[2] ? r.dbias : Tensor()};
                });
}
}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  Tensor out = ops::layer_norm(x, weight, bias, eps);
  if (!needs_graph(x, weight, bias)) return out;
  return record("layer_norm", out, {&x, &weight, &bias},
                [x = detach(x), w = detach(weight), eps](const Tensor& g, const Needs& n) -> Grads {
                  auto r = kernels::layer_norm_backward(x, w, eps, g, n[0], n[1] || n[2]);
                  return {r.dx, n[1] ? r.dweight : Tensor(), n[2] ? r.dbias : Tensor()};
                });
}

Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                  float eps) {
  return group_norm_impl("group_norm", x, groups, weight, bias, eps, false,
                         ops::group_norm(x, groups, weight, bias, eps));
}

Tensor group_norm_silu(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                       float eps) {
  return group_norm_impl("group_norm_silu", x, groups, weight, bias, eps, true,
                         ops::group_norm_silu(x, groups, weight, bias, eps));
}

Tensor softmax(const Tensor& x) {
  Tensor out = ops::softmax(x);
  if (!needs_graph(x)) return out;
  return record("softmax", out, {&x}, [y = detach(out)](const Tensor& g, const Needs&) -> Grads {
    return {kernels::softmax_backward(y, g)};
  });
}

Tensor log_softmax(const Tensor& x) {
  DF_CHECK(x.dtype() == DType::F32 && x.dim() >= 1, "log_softmax: x must be f32, got ", x.desc());
  Tensor out = kernels::log_softmax(x);
  if (!needs_graph(x)) return out;
  return record("log_softmax", out, {&x},
                [y = detach(out)](const Tensor& g, const Needs&) -> Grads {
                  return {kernels::log_softmax_backward(y, g)};
                });
}

}  // namespace diffuse::autograd
