// CLIP's vision transformer and the two-tower CLIPModel (transformers' names: "vision_model.",
// "text_model.", "visual_projection", "text_projection", "logit_scale").
#pragma once
#include <nlohmann/json.hpp>

#include "models/clip/clip_text_model.h"

namespace diffuse::models {

struct ClipVisionConfig {
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t num_channels = 3;
  int64_t image_size = 224;
  int64_t patch_size = 32;
  std::string hidden_act = "quick_gelu";
  float layer_norm_eps = 1e-5f;

  static ClipVisionConfig from_json(const nlohmann::json& j);  // transformers' vision_config
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
  ClipEncoderConfig encoder() const {
    return {hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            hidden_act,
            layer_norm_eps,
            false};
  }
};

// Patches (a stride-patch convolution), a learned class token in front, learned positions.
class ClipVisionEmbeddings : public nn::Module {
 public:
  explicit ClipVisionEmbeddings(const ClipVisionConfig& c);
  Tensor forward(const Tensor& pixels) const;  // [B, C, H, W] -> [B, 1 + patches, D]
  Tensor class_embedding;                      // [D]
  nn::Conv2d patch_embedding;
  nn::Embedding position_embedding;

 private:
  ClipVisionConfig config_;
};

struct ClipVisionOutput {
  Tensor last_hidden_state;  // [B, 1 + patches, D]
  Tensor pooler_output;      // post_layernorm of the class token, [B, D]
};

class ClipVisionTransformer : public nn::Module {
 public:
  explicit ClipVisionTransformer(const ClipVisionConfig& c);
  ClipVisionOutput forward(const Tensor& pixels) const;
  ClipVisionEmbeddings embeddings;
  nn::LayerNorm pre_layrnorm;  // (sic: transformers' name)
  ClipEncoder encoder;
  nn::LayerNorm post_layernorm;
};

struct ClipModelConfig {
  ClipTextConfig text;
  ClipVisionConfig vision;
  int64_t projection_dim = 512;
  static ClipModelConfig from_json(const nlohmann::json& j);  // transformers' CLIPConfig
};

struct ClipModelOutput {
  Tensor text_embeds, image_embeds;  // projected and L2-normalized, [B, projection_dim]
  Tensor logits_per_text;            // exp(logit_scale) * text_embeds image_embeds^T, [Bt, Bi]
  Tensor logits_per_image;           // its transpose, [Bi, Bt]
};

class ClipModel : public nn::Module {
 public:
  explicit ClipModel(const ClipModelConfig& c);
  // ids integer [Bt, L], pixels [Bi, C, H, W]
  ClipModelOutput forward(const Tensor& ids, const Tensor& pixels) const;
  const ClipModelConfig& config() const { return config_; }

  ClipTextTransformer text_model;
  ClipVisionTransformer vision_model;
  nn::Linear visual_projection, text_projection;
  Tensor logit_scale;  // 0-dim

 private:
  ClipModelConfig config_;
};

}  // namespace diffuse::models
