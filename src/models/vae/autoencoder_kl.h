// AutoencoderKL: the VAE that maps images to latents and back (diffusers' names).
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>

#include "io/tensor_map.h"
#include "models/blocks/resnet.h"

namespace diffuse::models {

struct VaeConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t latent_channels = 4;
  std::vector<int64_t> block_out_channels = {128, 256, 512, 512};
  int64_t layers_per_block = 2;
  int64_t norm_num_groups = 32;
  float scaling_factor = 0.18215f;
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  int64_t sample_size = 512;  // pixels; the tile of tiled decoding (as diffusers)
  // diffusers runs the VAE in float32 even in a half-precision pipeline (SDXL's VAE overflows
  // in fp16); kept for the config's round trip.
  bool force_upcast = true;

  // Reads diffusers' config.json fields, then check()s them.
  static VaeConfig from_json(const nlohmann::json& j);
  // Throws an Error naming the first field out of its sane range (layers_per_block 1..64,
  // channels, levels, groups, a positive scaling_factor).
  void check() const;
  // diffusers' config.json fields (from_json(to_json()) gives this config back).
  nlohmann::json to_json() const;
  static VaeConfig infer(const io::TensorMap& weights);  // everything but scaling_factor
};

// The VAE's single-head self-attention over pixels, with its own group norm and residual.
class VaeAttention : public nn::Module {
 public:
  VaeAttention(int64_t channels, int64_t groups);
  Tensor forward(const Tensor& x) const;  // [B, C, H, W]
  nn::GroupNorm group_norm;
  nn::Linear to_q, to_k, to_v;
  nn::ModuleList<nn::Linear> to_out;
};

class VaeMidBlock : public nn::Module {
 public:
  VaeMidBlock(int64_t channels, int64_t groups);
  Tensor forward(const Tensor& x) const;
  nn::ModuleList<VaeAttention> attentions;
  nn::ModuleList<ResnetBlock2D> resnets;
};

class VaeLevel : public nn::Module {
 public:
  VaeLevel();
  nn::ModuleList<ResnetBlock2D> resnets;
  nn::ModuleList<Downsample2D> downsamplers;
  nn::ModuleList<Upsample2D> upsamplers;
};

class VaeEncoder : public nn::Module {
 public:
  explicit VaeEncoder(const VaeConfig& c);
  Tensor forward(const Tensor& x) const;  // [B, 3, H, W] -> [B, 2 * latent, H/f, W/f]
  nn::Conv2d conv_in;
  nn::ModuleList<VaeLevel> down_blocks;
  VaeMidBlock mid_block;
  nn::GroupNorm conv_norm_out;
  nn::Conv2d conv_out;
};

class VaeDecoder : public nn::Module {
 public:
  explicit VaeDecoder(const VaeConfig& c);
  Tensor forward(const Tensor& z) const;  // [B, latent, h, w] -> [B, 3, h*f, w*f]
  nn::Conv2d conv_in;
  VaeMidBlock mid_block;
  nn::ModuleList<VaeLevel> up_blocks;
  nn::GroupNorm conv_norm_out;
  nn::Conv2d conv_out;
};

// diffusers' DiagonalGaussianDistribution.
struct LatentDistribution {
  Tensor mean, logvar;  // [B, latent, h, w]; logvar clamped to [-30, 20]
  // mean + exp(logvar / 2) * noise, noise shaped like mean.
  Tensor sample(const Tensor& noise) const;
  // KL divergence to N(0, I) of each batch entry: 0.5 * sum(mean^2 + var - 1 - logvar), [B].
  Tensor kl() const;
};

class AutoencoderKL : public nn::Module {
 public:
  explicit AutoencoderKL(const VaeConfig& c);
  // image in [-1, 1] -> the posterior over (unscaled) latents
  LatentDistribution encode(const Tensor& image) const;
  // unscaled latents -> image in about [-1, 1]
  Tensor decode(const Tensor& latents) const;
  // The same in tiles, as diffusers' enable_vae_tiling(): latents larger than a tile
  // (sample_size / scale_factor) are decoded in overlapping tiles (see tiled_decode), so that
  // the memory is one tile's whatever the image's size; others decode whole.
  Tensor decode_tiled(const Tensor& latents) const;
  const VaeConfig& config() const { return config_; }
  // Spatial downscale factor (8 for SD).
  int64_t scale_factor() const { return int64_t(1) << (config_.block_out_channels.size() - 1); }

  VaeEncoder encoder;
  VaeDecoder decoder;
  std::optional<nn::Conv2d> quant_conv, post_quant_conv;

 private:
  VaeConfig config_;
};

// diffusers' AutoencoderKL.tiled_decode over any per-tile decoder: latent tiles of
// `tile_latent`, started every 3/4 of a tile, each decoded alone to `tile_sample` pixels a side;
// each tile is blended linearly into the one above and the one to its left over a quarter of a
// tile (those already blended), cut to 3/4 of a tile and the tiles laid edge to edge.
Tensor tiled_decode(const Tensor& latents, int64_t tile_latent, int64_t tile_sample,
                    const std::function<Tensor(const Tensor&)>& decode_tile);

}  // namespace diffuse::models
