// The basic layers. Each holds typed parameters named as in PyTorch (weight, bias). Their forward
// calls autograd's differentiable functions: the same code serves inference and training.
#pragma once
#include <memory>

#include "nn/module.h"

namespace diffuse::nn {

// Something added to a Linear's or Conv2d's output, computed from the layer's input (a LoRA
// adapter): the layer returns base(x) + adapter->forward(x). Layers have none by default.
class LayerAdapter {
 public:
  virtual ~LayerAdapter() = default;
  virtual Tensor forward(const Tensor& x) const = 0;
};

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias = true);
  Tensor forward(const Tensor& x) const;  // [..., in] -> [..., out]
  Tensor weight, bias;
  int64_t in_features, out_features;
  std::shared_ptr<const LayerAdapter> adapter;  // not a parameter of the layer
};

class Conv2d : public Module {
 public:
  Conv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0,
         bool bias = true);
  Tensor forward(const Tensor& x) const;  // [B, in, H, W] -> [B, out, H', W']
  Tensor weight, bias;
  int64_t stride, padding;
  std::shared_ptr<const LayerAdapter> adapter;  // not a parameter of the layer
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, float eps = 1e-5f);
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;
  float eps;
};

class GroupNorm : public Module {
 public:
  GroupNorm(int64_t groups, int64_t channels, float eps = 1e-5f);
  Tensor forward(const Tensor& x) const;
  Tensor forward_silu(const Tensor& x) const;  // silu(forward(x)), fused
  Tensor weight, bias;
  int64_t groups;
  float eps;
};

class Embedding : public Module {
 public:
  Embedding(int64_t num, int64_t dim);
  Tensor forward(const Tensor& ids) const;  // ids [...] -> [..., dim]
  Tensor weight;
};

}  // namespace diffuse::nn
