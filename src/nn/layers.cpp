#include "nn/layers.h"

#include "autograd/functions.h"

namespace diffuse::nn {

Linear::Linear(int64_t in, int64_t out, bool has_bias) : in_features(in), out_features(out) {
  register_parameter("weight", weight, {out, in});
  if (has_bias) register_parameter("bias", bias, {out});
}

Tensor Linear::forward(const Tensor& x) const {
  Tensor y = autograd::linear(x, weight, bias);
  return adapter ? autograd::add(y, adapter->forward(x)) : y;
}

Conv2d::Conv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride_, int64_t padding_,
               bool has_bias)
    : stride(stride_), padding(padding_) {
  register_parameter("weight", weight, {out, in, kernel, kernel});
  if (has_bias) register_parameter("bias", bias, {out});
}

Tensor Conv2d::forward(const Tensor& x) const {
  Tensor y = autograd::conv2d(x, weight, bias, stride, padding);
  return adapter ? autograd::add(y, adapter->forward(x)) : y;
}

LayerNorm::LayerNorm(int64_t dim, float eps_) : eps(eps_) {
  register_parameter("weight", weight, {dim});
  register_parameter("bias", bias, {dim});
}

Tensor LayerNorm::forward(const Tensor& x) const {
  return autograd::layer_norm(x, weight, bias, eps);
}

GroupNorm::GroupNorm(int64_t groups_, int64_t channels, float eps_) : groups(groups_), eps(eps_) {
  register_parameter("weight", weight, {channels});
  register_parameter("bias", bias, {channels});
}

Tensor GroupNorm::forward(const Tensor& x) const {
  return autograd::group_norm(x, groups, weight, bias, eps);
}

Tensor GroupNorm::forward_silu(const Tensor& x) const {
  return autograd::group_norm_silu(x, groups, weight, bias, eps);
}

Embedding::Embedding(int64_t num, int64_t dim) {
  register_parameter("weight", weight, {num, dim});
}

Tensor Embedding::forward(const Tensor& ids) const {
  return autograd::embedding(weight, ids);
}

}  // namespace diffuse::nn
