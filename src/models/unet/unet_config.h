// Configuration of UNet2DConditionModel as SD 1.x / 2.x use it.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/tensor_map.h"

namespace diffuse::models {

struct UNetConfig {
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  std::vector<int64_t> block_out_channels = {320, 640, 1280, 1280};
  std::vector<bool> down_has_attention = {true, true, true, false};  // CrossAttnDownBlock2D?
  std::vector<bool> up_has_attention = {false, true, true, true};    // CrossAttnUpBlock2D?
  int64_t layers_per_block = 2;
  int64_t transformer_layers_per_block = 1;
  // Heads of each down level's attention (the up levels use them reversed, the mid block the
  // last). diffusers' SD1 configs call this field attention_head_dim.
  std::vector<int64_t> heads = {8, 8, 8, 8};
  int64_t cross_attention_dim = 768;
  bool use_linear_projection = false;
  bool upcast_attention = false;
  int64_t norm_num_groups = 32;
  float norm_eps = 1e-5f;
  bool flip_sin_to_cos = true;
  float freq_shift = 0;
  int64_t downsample_padding = 1;

  static UNetConfig from_json(const nlohmann::json& j);
  // diffusers' config.json fields (from_json(to_json()) gives this config back). Head counts go
  // in attention_head_dim, as SD's published configs store them.
  nlohmann::json to_json() const;
  // From the tensor shapes (canonical names). Heads are not in the shapes: SD1's convention
  // (8 heads everywhere) is used for conv projections, SD2's (64-wide heads) for linear ones.
  static UNetConfig infer(const io::TensorMap& weights);
  // Only in_channels and out_channels, from conv_in and conv_out.
  static UNetConfig infer_channels(const io::TensorMap& weights);

  int64_t time_embed_dim() const { return block_out_channels[0] * 4; }
};

}  // namespace diffuse::models
