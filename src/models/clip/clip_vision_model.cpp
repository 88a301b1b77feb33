#include "models/clip/clip_vision_model.h"

#include "nn/functional.h"

namespace diffuse::models {

namespace F = nn::F;

ClipVisionConfig ClipVisionConfig::from_json(const nlohmann::json& j) {
  ClipVisionConfig c;
  auto get = [&](const char* k, auto& v) {
    if (j.contains(k) && !j[k].is_null()) j[k].get_to(v);
  };
  try {
    get("hidden_size", c.hidden_size);
    get("intermediate_size", c.intermediate_size);
    get("num_hidden_layers", c.num_hidden_layers);
    get("num_attention_heads", c.num_attention_heads);
    get("num_channels", c.num_channels);
    get("image_size", c.image_size);
    get("patch_size", c.patch_size);
    get("hidden_act", c.hidden_act);
    get("layer_norm_eps", c.layer_norm_eps);
  } catch (const nlohmann::json::exception& e) {
    DF_FAIL("vision config: ", e.what());
  }
  DF_CHECK(c.hidden_act == "quick_gelu" || c.hidden_act == "gelu", "vision config: unsupported ",
           "hidden_act '", c.hidden_act, "'");
  DF_CHECK(c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0,
           "vision config: hidden_size ", c.hidden_size, " does not split into ",
           c.num_attention_heads, " heads");
  DF_CHECK(c.patch_size > 0 && c.image_size % c.patch_size == 0, "vision config: image_size ",
           c.image_size, " is not a multiple of patch_size ", c.patch_size);
  return c;
}

ClipVisionEmbeddings::ClipVisionEmbeddings(const ClipVisionConfig& c)
    : patch_embedding(c.num_channels, c.hidden_size, c.patch_size, c.patch_size, 0, false),
      position_embedding(c.num_patches() + 1, c.hidden_size),
      config_(c) {
  register_parameter("class_embedding", class_embedding, {c.hidden_size});
  register_module("patch_embedding", patch_embedding);
  register_module("position_embedding", position_embedding);
}

Tensor ClipVisionEmbeddings::forward(const Tensor& pixels) const {
  const auto& c = config_;
  DF_CHECK(pixels.dim() == 4 && pixels.size(1) == c.num_channels &&
               pixels.size(2) == c.image_size && pixels.size(3) == c.image_size,
           "vision model: pixels must be [B, ", c.num_channels, ", ", c.image_size, ", ",
           c.image_size, "], got ", pixels.desc());
  const int64_t b = pixels.size(0), d = c.hidden_size;
  Tensor p = patch_embedding.forward(pixels);                         // [B, D, gh, gw]
  p = F::transpose(F::view(p, {b, d, p.size(2) * p.size(3)}), 1, 2);  // b d (gh gw) -> b n d
  Tensor cls = F::add(Tensor::zeros({b, 1, d}), F::view(class_embedding, {1, 1, d}));  // [B, 1, D]
  Tensor x = F::cat({cls, p}, 1);  // [B, 1 + n, D]
  return F::add(x, F::unsqueeze(position_embedding.weight, 0));
}

ClipVisionTransformer::ClipVisionTransformer(const ClipVisionConfig& c)
    : embeddings(c),
      pre_layrnorm(c.hidden_size, c.layer_norm_eps),
      encoder(c.encoder()),
      post_layernorm(c.hidden_size, c.layer_norm_eps) {
  register_module("embeddings", embeddings);
  register_module("pre_layrnorm", pre_layrnorm);
  register_module("encoder", encoder);
  register_module("post_layernorm", post_layernorm);
}

ClipVisionOutput ClipVisionTransformer::forward(const Tensor& pixels) const {
  ClipVisionOutput out;
  out.last_hidden_state = encoder.forward(pre_layrnorm.forward(embeddings.forward(pixels)));
  out.pooler_output = post_layernorm.forward(F::select(out.last_hidden_state, 1, 0));  // [B, D]
  return out;
}

ClipModelConfig ClipModelConfig::from_json(const nlohmann::json& j) {
  ClipModelConfig c;
  DF_CHECK(j.contains("text_config") && j.contains("vision_config"),
           "CLIP config: text_config and vision_config are required");
  c.text = ClipTextConfig::from_json(j["text_config"]);
  c.vision = ClipVisionConfig::from_json(j["vision_config"]);
  try {
    if (j.contains("projection_dim") && !j["projection_dim"].is_null())
      c.projection_dim = j["projection_dim"].get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    DF_FAIL("CLIP config: ", e.what());
  }
  return c;
}

ClipModel::ClipModel(const ClipModelConfig& c)
    : text_model(c.text),
      vision_model(c.vision),
      visual_projection(c.vision.hidden_size, c.projection_dim, false),
      text_projection(c.text.hidden_size, c.projection_dim, false),
      config_(c) {
  register_module("text_model", text_model);
  register_module("vision_model", vision_model);
  register_module("visual_projection", visual_projection);
  register_module("text_projection", text_projection);
  register_parameter("logit_scale", logit_scale, {});
}

namespace {
// x / ||x|| over the last dim
Tensor l2_normalize(const Tensor& x) {
  return F::div(x, F::sqrt(F::sum(F::square(x), {-1}, true)));
}
}  // namespace

ClipModelOutput ClipModel::forward(const Tensor& ids, const Tensor& pixels) const {
  ClipModelOutput out;
  out.image_embeds =
      l2_normalize(visual_projection.forward(vision_model.forward(pixels).pooler_output));
  out.text_embeds = l2_normalize(text_projection.forward(text_model.forward(ids).pooler_output));
  // [Bt, P] @ [P, Bi] -> [Bt, Bi], times exp(logit_scale)
  Tensor sim = F::matmul(out.text_embeds, F::transpose(out.image_embeds, 0, 1));
  out.logits_per_text = F::mul(sim, F::exp(logit_scale));
  out.logits_per_image = F::transpose(out.logits_per_text, 0, 1);
  return out;
}

}  // namespace diffuse::models
