// Configuration of CLIP's text transformer (transformers' CLIPTextConfig fields).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "io/tensor_map.h"

namespace diffuse::models {

// The shape of a CLIP transformer encoder (shared by the text and vision towers).
struct ClipEncoderConfig {
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  std::string hidden_act = "quick_gelu";  // or "gelu"
  float layer_norm_eps = 1e-5f;
  bool causal = true;  // text: causal self-attention; vision: full
};

struct ClipTextConfig {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";  // or "gelu"
  float layer_norm_eps = 1e-5f;
  int64_t bos_token_id = 49406;
  int64_t eos_token_id = 49407;
  // Blocks of the encoder as published that the stored weights lack (SD2's OpenCLIP encoder
  // is published with one more block than Stable Diffusion uses). Clip skip counts from the
  // published end.
  int64_t unused_published_layers = 0;
  // Width of text_projection (transformers' CLIPTextModelWithProjection, SDXL's second
  // encoder); 0: no projection (CLIPTextModel, whose configs may still name a projection_dim).
  int64_t projection_dim = 0;

  // From a transformers config.json. projection_dim is read only when the config's
  // architectures name CLIPTextModelWithProjection (the class decides whether the model has a
  // projection; CLIPTextModel configs carry an unused projection_dim too).
  static ClipTextConfig from_json(const nlohmann::json& j);
  // transformers' CLIPTextConfig fields (from_json(to_json()) gives this config back;
  // unused_published_layers is not a config field and stays out). With a projection the
  // architecture is CLIPTextModelWithProjection.
  nlohmann::json to_json() const;
  // From the tensor shapes (canonical names); projection_dim from text_projection.weight when
  // present. Head counts are not in the shapes: the published encoders use 64-wide heads, so
  // heads = hidden_size / head_dim.
  static ClipTextConfig infer(const io::TensorMap& weights, const std::string& hidden_act,
                              int64_t head_dim = 64);

  int64_t published_layers() const { return num_hidden_layers + unused_published_layers; }
  ClipEncoderConfig encoder() const {
    return {hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            hidden_act,
            layer_norm_eps,
            true};
  }
};

}  // namespace diffuse::models
