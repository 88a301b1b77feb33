// Dispatch of layer norm, group norm (optionally fused with SiLU) and softmax.
#include "ops/cpu/kernels.h"
#include "ops/ops.h"
#include "ops/profile.h"
#include "ops/shape_util.h"

namespace diffuse::ops {

namespace {

// An optional per-channel parameter: undefined, or f32 [n] (made contiguous).
Tensor channel_param(const Tensor& p, int64_t n, const char* op, const char* arg, const Tensor& x) {
  if (!p.defined()) return p;
  check_f32(p, op, arg);
  DF_CHECK(p.dim() == 1 && p.shape()[0] == n, op, ": ", arg, " ", p.desc(), " does not match ",
           "input ", x.desc(), " (expected [", n, "])");
  return p.contiguous();
}

Tensor group_norm_impl(const char* op, const Tensor& x, int64_t groups, const Tensor& weight,
                       const Tensor& bias, float eps, bool silu) {
  check_f32(x, op, "x");
  DF_CHECK(x.dim() >= 2, op, ": input must be [B, C, ...], got ", x.desc());
  const int64_t c = x.shape()[1];
  DF_CHECK(groups > 0 && c % groups == 0, op, ": ", c, " channels of ", x.desc(),
           " cannot be split into ", groups, " groups");
  Tensor w = channel_param(weight, c, op, "weight", x);
  Tensor b = channel_param(bias, c, op, "bias", x);
  ProfileScope prof(op);
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(x.shape());
  cpu::group_norm(xc, groups, w, b, eps, silu, out);
  return out;
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  check_f32(x, "layer_norm", "x");
  DF_CHECK(x.dim() >= 1, "layer_norm: input must have at least one dim, got ", x.desc());
  const int64_t d = x.shape().back();
  Tensor w = channel_param(weight, d, "layer_norm", "weight", x);
  Tensor b = channel_param(bias, d, "layer_norm", "bias", x);
  ProfileScope prof("layer_norm");
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(x.shape());
  cpu::layer_norm(xc, w, b, eps, out);
  return out;
}

Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                  float eps) {
  return group_norm_impl("group_norm", x, groups, weight, bias, eps, false);
}

Tensor group_norm_silu(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                       float eps) {
  return group_norm_impl("group_norm_silu", x, groups, weight, bias, eps, true);
}

Tensor softmax(const Tensor& x) {
  check_f32(x, "softmax", "x");
  ProfileScope prof("softmax");
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(x.shape());
  cpu::softmax(xc, out);
  return out;
}

}  // namespace diffuse::ops
