// UNet2DConditionModel (SD 1.x / 2.x, SDXL), sectioned as diffusers' forward: time embedding,
// down, mid, up, out. Registered names mirror the diffusers checkpoint.
#pragma once
#include <optional>

#include "models/blocks/resnet.h"
#include "models/unet/transformer_2d.h"
#include "models/unet/unet_config.h"

namespace diffuse::models {

// Sinusoidal embedding of a timestep per batch entry: [B] -> [B, dim].
Tensor timestep_embedding(const std::vector<float>& timesteps, int64_t dim, bool flip_sin_to_cos,
                          float freq_shift);

class TimestepEmbedding : public nn::Module {
 public:
  TimestepEmbedding(int64_t in, int64_t dim);
  Tensor forward(const Tensor& x) const;  // linear_1 -> silu -> linear_2
  nn::Linear linear_1, linear_2;
};

// One down or up level: resnets, an optional transformer after each, an optional resampler.
class UNetLevel : public nn::Module {
 public:
  nn::ModuleList<ResnetBlock2D> resnets;
  nn::ModuleList<Transformer2DModel> attentions;
  nn::ModuleList<Downsample2D> downsamplers;
  nn::ModuleList<Upsample2D> upsamplers;
  UNetLevel();
};

// resnet, attention, resnet (UNetMidBlock2DCrossAttn), or two resnets (UNetMidBlock2D).
class UNetMidBlock : public nn::Module {
 public:
  UNetMidBlock(const UNetConfig& c);
  Tensor forward(const Tensor& x, const Tensor& temb, const Tensor& context) const;
  nn::ModuleList<Transformer2DModel> attentions;
  nn::ModuleList<ResnetBlock2D> resnets;
};

class UNet2DConditionModel : public nn::Module {
 public:
  explicit UNet2DConditionModel(const UNetConfig& c);

  // sample [B, in_channels, h, w], one timestep per batch entry, context [B, S, D]
  // -> the prediction [B, out_channels, h, w]. With addition_embed_type "text_time" (SDXL) the
  // added conditioning is required: text_embeds [B, P] (the pooled text embedding) and
  // time_ids [B, n] (micro-conditioning) with P + n * addition_time_embed_dim =
  // projection_class_embeddings_input_dim; without it both must be left undefined.
  Tensor forward(const Tensor& sample, const std::vector<float>& timesteps, const Tensor& context,
                 const Tensor& text_embeds = {}, const Tensor& time_ids = {}) const;

  // The added embedding of text_time ([B, time_embed_dim]), as diffusers' get_aug_embed: each
  // time id through the sinusoidal projection of width addition_time_embed_dim, flattened per
  // row, after text_embeds, through add_embedding.
  Tensor added_embedding(const Tensor& text_embeds, const Tensor& time_ids) const;

  const UNetConfig& config() const { return config_; }

  // Gradient checkpointing (training): each resnet with its transformer, and the mid block, keep
  // only their inputs and are recomputed in the backward pass. Off by default.
  void set_gradient_checkpointing(bool on) { checkpointing_ = on; }
  bool gradient_checkpointing() const { return checkpointing_; }

  nn::Conv2d conv_in;
  TimestepEmbedding time_embedding;
  std::optional<TimestepEmbedding> add_embedding;  // text_time only
  nn::ModuleList<UNetLevel> down_blocks;
  UNetMidBlock mid_block;
  nn::ModuleList<UNetLevel> up_blocks;
  nn::GroupNorm conv_norm_out;
  nn::Conv2d conv_out;

 private:
  UNetConfig config_;
  bool checkpointing_ = false;
};

}  // namespace diffuse::models
