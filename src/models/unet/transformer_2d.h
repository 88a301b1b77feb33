// The UNet's spatial transformer (diffusers' Transformer2DModel and BasicTransformerBlock).
#pragma once
#include <optional>

#include "nn/layers.h"

namespace diffuse::models {

// Attention with diffusers' names: to_q, to_k, to_v (no bias), to_out.0 (with bias).
class CrossAttention : public nn::Module {
 public:
  CrossAttention(int64_t query_dim, int64_t context_dim, int64_t heads, int64_t head_dim);
  // x [B, L, query_dim], context [B, S, context_dim] (undefined: self-attention)
  Tensor forward(const Tensor& x, const Tensor& context = Tensor()) const;
  nn::Linear to_q, to_k, to_v;
  nn::ModuleList<nn::Linear> to_out;
  int64_t heads;
};

// GEGLU feed-forward: net.0.proj (dim -> 2*inner), x * gelu(gate), net.2 (inner -> dim).
class FeedForward : public nn::Module {
 public:
  FeedForward(int64_t dim, int64_t mult = 4);
  Tensor forward(const Tensor& x) const;

  struct GEGLU : nn::Module {
    GEGLU(int64_t in, int64_t out);
    nn::Linear proj;
  };
  struct Net : nn::Module {
    Net(int64_t dim, int64_t inner);
    GEGLU geglu;     // "0"
    nn::Linear out;  // "2"
  } net;
};

class BasicTransformerBlock : public nn::Module {
 public:
  BasicTransformerBlock(int64_t dim, int64_t context_dim, int64_t heads, int64_t head_dim);
  Tensor forward(const Tensor& x, const Tensor& context) const;
  nn::LayerNorm norm1;
  CrossAttention attn1;
  nn::LayerNorm norm2;
  CrossAttention attn2;
  nn::LayerNorm norm3;
  FeedForward ff;
};

class Transformer2DModel : public nn::Module {
 public:
  Transformer2DModel(int64_t channels, int64_t heads, int64_t context_dim, int64_t layers,
                     bool linear_projection, int64_t groups);
  // x [B, C, H, W], context [B, S, context_dim] -> [B, C, H, W]
  Tensor forward(const Tensor& x, const Tensor& context) const;

  nn::GroupNorm norm;
  std::optional<nn::Conv2d> proj_in_conv, proj_out_conv;
  std::optional<nn::Linear> proj_in_linear, proj_out_linear;
  nn::ModuleList<BasicTransformerBlock> transformer_blocks;
};

}  // namespace diffuse::models
