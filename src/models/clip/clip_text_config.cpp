#include "models/clip/clip_text_config.h"

#include "core/error.h"
#include "models/config_json.h"

namespace diffuse::models {

ClipTextConfig ClipTextConfig::from_json(const nlohmann::json& j) {
  ClipTextConfig c;
  auto get = [&](const char* k, auto& v) {
    if (j.contains(k) && !j[k].is_null()) j[k].get_to(v);
  };
  try {
    get("vocab_size", c.vocab_size);
    get("hidden_size", c.hidden_size);
    get("intermediate_size", c.intermediate_size);
    get("num_hidden_layers", c.num_hidden_layers);
    get("num_attention_heads", c.num_attention_heads);
    get("max_position_embeddings", c.max_position_embeddings);
    get("hidden_act", c.hidden_act);
    get("layer_norm_eps", c.layer_norm_eps);
    get("bos_token_id", c.bos_token_id);
    get("eos_token_id", c.eos_token_id);
    bool with_projection = false;
    if (j.contains("architectures") && j["architectures"].is_array())
      for (const auto& a : j["architectures"])
        with_projection |= a == "CLIPTextModelWithProjection";
    if (with_projection) {
      DF_CHECK(j.contains("projection_dim") && j["projection_dim"].is_number_integer(),
               "text encoder config.json: CLIPTextModelWithProjection without projection_dim");
      get("projection_dim", c.projection_dim);
      DF_CHECK(c.projection_dim > 0, "text encoder config.json: projection_dim ", c.projection_dim,
               " must be positive");
    }
  } catch (const nlohmann::json::exception& e) {
    DF_FAIL("text encoder config.json: ", e.what());
  }
  DF_CHECK(c.hidden_act == "quick_gelu" || c.hidden_act == "gelu",
           "text encoder config.json: ", "unsupported hidden_act '", c.hidden_act, "'");
  DF_CHECK(c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0,
           "text encoder config.json: hidden_size ", c.hidden_size, " does not split into ",
           c.num_attention_heads, " heads");
  return c;
}

nlohmann::json ClipTextConfig::to_json() const {
  nlohmann::json j = {
      {"architectures", {projection_dim > 0 ? "CLIPTextModelWithProjection" : "CLIPTextModel"}},
      {"model_type", "clip_text_model"},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_hidden_layers", num_hidden_layers},
      {"num_attention_heads", num_attention_heads},
      {"max_position_embeddings", max_position_embeddings},
      {"hidden_act", hidden_act},
      {"layer_norm_eps", json_float(layer_norm_eps)},
      {"bos_token_id", bos_token_id},
      {"eos_token_id", eos_token_id}};
  if (projection_dim > 0) j["projection_dim"] = projection_dim;
  return j;
}

ClipTextConfig ClipTextConfig::infer(const io::TensorMap& w, const std::string& hidden_act,
                                     int64_t head_dim) {
  auto shape_of = [&](const std::string& name) -> const Shape& {
    auto it = w.find(name);
    DF_CHECK(it != w.end(), "text encoder: tensor ", name, " is missing");
    return it->second.shape();
  };
  ClipTextConfig c;
  const Shape& tok = shape_of("text_model.embeddings.token_embedding.weight");
  const Shape& pos = shape_of("text_model.embeddings.position_embedding.weight");
  const Shape& fc1 = shape_of("text_model.encoder.layers.0.mlp.fc1.weight");
  c.vocab_size = tok[0];
  c.hidden_size = tok[1];
  c.max_position_embeddings = pos[0];
  c.intermediate_size = fc1[0];
  c.num_hidden_layers = 0;
  while (w.count("text_model.encoder.layers." + std::to_string(c.num_hidden_layers) +
                 ".self_attn.q_proj.weight"))
    ++c.num_hidden_layers;
  c.hidden_act = hidden_act;
  if (auto proj = w.find("text_projection.weight"); proj != w.end())
    c.projection_dim = proj->second.size(0);  // [projection_dim, hidden_size]
  // 0 = unknown: the model refuses to be built until a config gives the count.
  c.num_attention_heads =
      head_dim > 0 && c.hidden_size % head_dim == 0 ? c.hidden_size / head_dim : 0;
  return c;
}

}  // namespace diffuse::models
