// Shared by the LoRA tests: a small random UNet and the reference model they run on.
#pragma once
#include <memory>
#include <random>

#include "models/unet/unet_2d_condition.h"

namespace diffuse::test {

// Two levels (attention in the first down and the last up level), one layer each, 1x1
// convolution projections.
inline models::UNetConfig lora_test_unet_config() {
  models::UNetConfig c;
  c.block_out_channels = {8, 16};
  c.down_has_attention = {true, false};
  c.up_has_attention = {false, true};
  c.layers_per_block = 1;
  c.heads = {2, 2};
  c.cross_attention_dim = 8;
  c.norm_num_groups = 4;
  return c;
}

inline Tensor seeded_randn(const Shape& s, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(size_t(shape_numel(s)));
  for (float& x : v) x = d(rng);
  return Tensor::from_vector(v, s);
}

inline std::unique_ptr<models::UNet2DConditionModel> lora_test_unet(uint32_t seed) {
  auto unet = std::make_unique<models::UNet2DConditionModel>(lora_test_unet_config());
  uint32_t k = seed;
  for (auto& p : unet->named_parameters()) *p.tensor = seeded_randn(p.shape, ++k, 0.2f);
  return unet;
}

}  // namespace diffuse::test
