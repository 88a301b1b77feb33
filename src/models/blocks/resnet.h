// Blocks shared by the UNet and the VAE (diffusers' models/resnet.py names).
#pragma once
#include <optional>

#include "nn/layers.h"

namespace diffuse::models {

// GroupNorm -> SiLU -> conv3x3, twice, with an optional time embedding added in between and
// a 1x1 shortcut when the channel count changes.
class ResnetBlock2D : public nn::Module {
 public:
  // temb_channels 0: no time embedding (the VAE's blocks).
  ResnetBlock2D(int64_t in, int64_t out, int64_t temb_channels, int64_t groups, float eps);
  // x [B, in, H, W], temb [B, temb_channels] (or undefined) -> [B, out, H, W]
  Tensor forward(const Tensor& x, const Tensor& temb = Tensor()) const;

  nn::GroupNorm norm1;
  nn::Conv2d conv1;
  std::optional<nn::Linear> time_emb_proj;
  nn::GroupNorm norm2;
  nn::Conv2d conv2;
  std::optional<nn::Conv2d> conv_shortcut;
};

// A stride-2 3x3 convolution ("downsamplers.0.conv"). padding 0 pads right and bottom by one
// first, as the VAE's encoder does.
class Downsample2D : public nn::Module {
 public:
  Downsample2D(int64_t channels, int64_t padding);
  Tensor forward(const Tensor& x) const;
  nn::Conv2d conv;
  int64_t padding;
};

// Nearest 2x upsampling, then a 3x3 convolution ("upsamplers.0.conv").
class Upsample2D : public nn::Module {
 public:
  explicit Upsample2D(int64_t channels);
  Tensor forward(const Tensor& x) const;
  nn::Conv2d conv;
};

}  // namespace diffuse::models
