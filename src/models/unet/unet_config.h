// Configuration of UNet2DConditionModel as SD 1.x / 2.x and SDXL (base, refiner, distilled
// variants) use it.
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
  // Transformer blocks in each attention of each down level (diffusers' int or list): one entry
  // per level, or a single entry for every level (what from_json and infer make of equal
  // depths). The mid block takes the last entry; the up levels take them reversed unless
  // reverse_transformer_layers_per_block gives them.
  std::vector<int64_t> transformer_layers_per_block = {1};
  // Asymmetric (distilled) UNets: per up level (up_blocks order), the depth of each of its
  // layers_per_block + 1 attentions. Empty: the down levels' depths reversed.
  std::vector<std::vector<int64_t>> reverse_transformer_layers_per_block;
  // The mid block: resnet, attention, resnet (UNetMidBlock2DCrossAttn) or two resnets
  // (UNetMidBlock2D, as some distilled SDXL variants have).
  bool mid_block_has_attention = true;
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
  // Added conditioning: "" (none) or "text_time" (SDXL: the pooled text embedding and the
  // micro-conditioning time ids, each id through a sinusoidal embedding of width
  // addition_time_embed_dim, concatenated: projection_class_embeddings_input_dim wide).
  std::string addition_embed_type;
  int64_t addition_time_embed_dim = 0;
  int64_t projection_class_embeddings_input_dim = 0;

  // From a diffusers config.json. Throws an Error naming the field for any value this UNet
  // cannot honour (class embeddings, other added embeddings, other block types, ...).
  static UNetConfig from_json(const nlohmann::json& j);
  // diffusers' config.json fields (from_json(to_json()) gives this config back). Head counts go
  // in attention_head_dim, as SD's published configs store them.
  nlohmann::json to_json() const;
  // From the tensor shapes (canonical names). Heads are not in the shapes: SD1's convention
  // (8 heads everywhere) is used for conv projections, 64-wide heads (SD2, SDXL) for linear
  // ones. Nor is addition_time_embed_dim: SDXL's 256 is taken when the added embedding is wide
  // enough for 5 ids of 256 (SDXL base: 1280 + 6 * 256, refiner: 1280 + 5 * 256); a narrower one
  // whose width minus cross_attention_dim splits into 5 (a refiner, whose pooled width is its
  // context width) takes that; otherwise it stays 0 (unknown: the model asks for a config).
  static UNetConfig infer(const io::TensorMap& weights);
  // Only in_channels and out_channels, from conv_in and conv_out.
  static UNetConfig infer_channels(const io::TensorMap& weights);

  int64_t time_embed_dim() const { return block_out_channels[0] * 4; }
  // Transformer blocks of down level `level`'s attentions, up level `level`'s (up_blocks
  // order) attention `layer`, and the mid block's attention.
  int64_t down_transformer_layers(size_t level) const;
  int64_t up_transformer_layers(size_t level, size_t layer) const;
  int64_t mid_transformer_layers() const { return transformer_layers_per_block.back(); }
  bool has_text_time() const { return addition_embed_type == "text_time"; }
};

}  // namespace diffuse::models
