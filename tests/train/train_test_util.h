// Shared by the training tests: seeded random values and a small random UNet.
#pragma once
#include <cstdint>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "models/unet/unet_2d_condition.h"
#include "nn/module.h"

namespace diffuse::test {

// `n` draws of N(0, scale^2) from std::mt19937(seed).
inline std::vector<float> seeded_normal(int64_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

inline Tensor seeded_randn(const Shape& s, uint32_t seed, float scale = 1.f) {
  return Tensor::from_vector(seeded_normal(shape_numel(s), seed, scale), s);
}

// A CLIPConfig file (dir/clip.json) of a tiny CLIP: 32 wide, one layer per tower, 32 px images,
// 16 tokens.
inline std::string tiny_clip_config(const std::string& dir) {
  const std::string cfg = dir + "/clip.json";
  std::ofstream(cfg) << R"({"projection_dim": 16,
    "text_config": {"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64,
                    "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 16},
    "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                      "num_attention_heads": 2, "image_size": 32, "patch_size": 8}})";
  return cfg;
}

// Every parameter of `m` random N(0, scale^2), the i-th (in named_parameters order) drawn with
// seed + 1 + i.
inline void randomize_parameters(nn::Module& m, uint32_t seed, float scale = 0.2f) {
  for (auto& p : m.named_parameters()) *p.tensor = seeded_randn(p.shape, ++seed, scale);
}

// Two levels (attention in the first down and the last up level), one layer each, 1x1
// convolution projections.
inline models::UNetConfig small_unet_config() {
  models::UNetConfig c;
  c.block_out_channels = {8, 16};
  c.down_has_attention = {true, false};
  c.up_has_attention = {false, true};
  c.layers_per_block = 1;
  c.heads = {2, 2};
  c.transformer_layers_per_block = {1, 1};
  c.cross_attention_dim = 8;
  c.norm_num_groups = 4;
  return c;
}

// A UNet of small_unet_config() with randomize_parameters(seed) weights.
inline std::unique_ptr<models::UNet2DConditionModel> small_random_unet(uint32_t seed) {
  auto unet = std::make_unique<models::UNet2DConditionModel>(small_unet_config());
  randomize_parameters(*unet, seed);
  return unet;
}

}  // namespace diffuse::test
