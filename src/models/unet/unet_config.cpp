#include "models/unet/unet_config.h"

#include <algorithm>

#include "core/error.h"
#include "models/config_json.h"

namespace diffuse::models {

namespace {

using json = nlohmann::json;

std::vector<int64_t> int_or_list(const json& v, size_t n) {
  if (v.is_array()) return v.get<std::vector<int64_t>>();
  return std::vector<int64_t>(n, v.get<int64_t>());
}

bool all_equal(const std::vector<int64_t>& v) {
  return std::all_of(v.begin(), v.end(), [&](int64_t x) { return x == v.front(); });
}

// An int, or a list with one equal value per level: the value. Other lists are an error.
int64_t uniform_int(const json& v, const char* field) {
  if (!v.is_array()) return v.get<int64_t>();
  const auto list = v.get<std::vector<int64_t>>();
  DF_CHECK(!list.empty() && all_equal(list), "unet config.json: ", field, " ", v.dump(),
           " differs per level, which is not supported");
  return list.front();
}

// Fields whose non-default values this UNet does not implement: the value must be null / absent
// or equal the default (compared as JSON).
struct Unsupported {
  const char* field;
  json default_value;  // null: the field must be null
};

void check_unsupported(const json& j) {
  const Unsupported fields[] = {
      {"class_embed_type", nullptr},
      {"num_class_embeds", nullptr},
      {"encoder_hid_dim", nullptr},
      {"encoder_hid_dim_type", nullptr},
      {"time_embedding_type", "positional"},
      {"time_embedding_dim", nullptr},
      {"time_embedding_act_fn", nullptr},
      {"timestep_post_act", nullptr},
      {"time_cond_proj_dim", nullptr},
      {"attention_type", "default"},
      {"dual_cross_attention", false},
      {"only_cross_attention", false},
      {"mid_block_only_cross_attention", nullptr},
      {"resnet_time_scale_shift", "default"},
      {"resnet_skip_time_act", false},
      {"resnet_out_scale_factor", 1.0},
      {"mid_block_scale_factor", 1.0},
      {"class_embeddings_concat", false},
      {"cross_attention_norm", nullptr},
      {"center_input_sample", false},
      {"act_fn", "silu"},
      {"conv_in_kernel", 3},
      {"conv_out_kernel", 3},
  };
  for (const Unsupported& u : fields) {
    if (!j.contains(u.field) || j[u.field].is_null()) continue;
    const json& v = j[u.field];
    // numbers compare by value (1 == 1.0); a list of `false` is only_cross_attention's default
    bool same = v == u.default_value;
    if (!same && v.is_number() && u.default_value.is_number())
      same = v.get<double>() == u.default_value.get<double>();
    if (!same && v.is_array() && u.default_value.is_boolean())
      same = std::all_of(v.begin(), v.end(), [&](const json& x) { return x == u.default_value; });
    DF_CHECK(same, "unet config.json: ", u.field, " = ", v.dump(), " is not supported",
             u.default_value.is_null() ? "" : " (only " + u.default_value.dump() + ")");
  }
}

std::vector<bool> block_attention(const json& types, size_t n, const char* field, const char* plain,
                                  const char* cross) {
  const auto t = types.get<std::vector<std::string>>();
  DF_CHECK(t.size() == n, "unet config.json: ", t.size(), " ", field, " for ", n, " levels");
  std::vector<bool> out;
  for (const std::string& s : t) {
    DF_CHECK(s == plain || s == cross, "unet config.json: ", field, " entry '", s,
             "' is not supported (only ", plain, " and ", cross, ")");
    out.push_back(s == cross);
  }
  return out;
}

// One entry when all are equal (an int in diffusers' config).
std::vector<int64_t> single_if_equal(const std::vector<int64_t>& v) {
  if (!v.empty() && all_equal(v)) return std::vector<int64_t>(1, v.front());
  return v;
}

// transformer_layers_per_block: an int, or per level an int or a list (one per layer) of equal
// values.
std::vector<int64_t> transformer_depths(const json& v, size_t n) {
  if (!v.is_array()) return std::vector<int64_t>(n, v.get<int64_t>());
  DF_CHECK(v.size() == n, "unet config.json: transformer_layers_per_block has ", v.size(),
           " entries for ", n, " levels");
  std::vector<int64_t> out;
  for (const json& level : v) out.push_back(uniform_int(level, "transformer_layers_per_block"));
  return out;
}

}  // namespace

int64_t UNetConfig::down_transformer_layers(size_t level) const {
  const auto& d = transformer_layers_per_block;
  return d.size() == 1 ? d.front() : d.at(level);
}

int64_t UNetConfig::up_transformer_layers(size_t level, size_t layer) const {
  if (!reverse_transformer_layers_per_block.empty())
    return reverse_transformer_layers_per_block.at(level).at(layer);
  return down_transformer_layers(block_out_channels.size() - 1 - level);
}

UNetConfig UNetConfig::from_json(const json& j) {
  UNetConfig c;
  try {
    DF_CHECK(j.is_object(), "unet config.json: not a JSON object");
    check_unsupported(j);
    auto get = [&](const char* k, auto& v) {
      if (j.contains(k) && !j[k].is_null()) j[k].get_to(v);
    };
    get("in_channels", c.in_channels);
    get("out_channels", c.out_channels);
    get("block_out_channels", c.block_out_channels);
    const size_t n = c.block_out_channels.size();
    DF_CHECK(n >= 1, "unet config.json: block_out_channels is empty");
    // Absent block types keep diffusers' defaults (SD1's), which fit only 4 levels.
    if (j.contains("down_block_types"))
      c.down_has_attention = block_attention(j["down_block_types"], n, "down_block_types",
                                             "DownBlock2D", "CrossAttnDownBlock2D");
    if (j.contains("up_block_types"))
      c.up_has_attention = block_attention(j["up_block_types"], n, "up_block_types", "UpBlock2D",
                                           "CrossAttnUpBlock2D");
    DF_CHECK(c.down_has_attention.size() == n && c.up_has_attention.size() == n,
             "unet config.json: give down_block_types and up_block_types for ", n, " levels");
    if (j.contains("mid_block_type")) {
      const json& mid = j["mid_block_type"];
      DF_CHECK(mid.is_string() && (mid == "UNetMidBlock2DCrossAttn" || mid == "UNetMidBlock2D"),
               "unet config.json: mid_block_type = ", mid.dump(), " is not supported (only ",
               "UNetMidBlock2DCrossAttn and UNetMidBlock2D)");
      c.mid_block_has_attention = mid == "UNetMidBlock2DCrossAttn";
    }
    if (j.contains("layers_per_block") && !j["layers_per_block"].is_null())
      c.layers_per_block = uniform_int(j["layers_per_block"], "layers_per_block");
    if (j.contains("transformer_layers_per_block") && !j["transformer_layers_per_block"].is_null())
      c.transformer_layers_per_block =
          single_if_equal(transformer_depths(j["transformer_layers_per_block"], n));
    if (j.contains("reverse_transformer_layers_per_block") &&
        !j["reverse_transformer_layers_per_block"].is_null()) {
      const json& r = j["reverse_transformer_layers_per_block"];
      DF_CHECK(r.is_array() && r.size() == n,
               "unet config.json: ", "reverse_transformer_layers_per_block must list ", n,
               " up levels, got ", r.dump());
      for (const json& level : r)
        c.reverse_transformer_layers_per_block.push_back(
            int_or_list(level, size_t(c.layers_per_block + 1)));
      for (const auto& level : c.reverse_transformer_layers_per_block)
        DF_CHECK(int64_t(level.size()) == c.layers_per_block + 1,
                 "unet config.json: ", "reverse_transformer_layers_per_block needs ",
                 c.layers_per_block + 1, " depths per up level, got ", r.dump());
    }
    // num_attention_heads wins when given; otherwise attention_head_dim holds the head count.
    if (j.contains("num_attention_heads") && !j["num_attention_heads"].is_null())
      c.heads = int_or_list(j["num_attention_heads"], n);
    else if (j.contains("attention_head_dim") && !j["attention_head_dim"].is_null())
      c.heads = int_or_list(j["attention_head_dim"], n);
    else
      c.heads.assign(n, 8);
    DF_CHECK(c.heads.size() == n, "unet config.json: ", c.heads.size(), " head counts for ", n,
             " levels");
    if (j.contains("cross_attention_dim") && !j["cross_attention_dim"].is_null())
      c.cross_attention_dim = uniform_int(j["cross_attention_dim"], "cross_attention_dim");
    get("use_linear_projection", c.use_linear_projection);
    get("upcast_attention", c.upcast_attention);
    DF_CHECK(j.value("norm_num_groups", json(32)).is_number(),
             "unet config.json: ", "norm_num_groups = null (no output norm) is not supported");
    get("norm_num_groups", c.norm_num_groups);
    get("norm_eps", c.norm_eps);
    get("flip_sin_to_cos", c.flip_sin_to_cos);
    get("freq_shift", c.freq_shift);
    get("downsample_padding", c.downsample_padding);
    get("addition_embed_type", c.addition_embed_type);
    DF_CHECK(c.addition_embed_type.empty() || c.addition_embed_type == "text_time",
             "unet config.json: addition_embed_type = \"", c.addition_embed_type,
             "\" is not supported (only \"text_time\")");
    get("addition_time_embed_dim", c.addition_time_embed_dim);
    get("projection_class_embeddings_input_dim", c.projection_class_embeddings_input_dim);
    if (c.has_text_time())
      DF_CHECK(c.addition_time_embed_dim > 0 && c.projection_class_embeddings_input_dim > 0,
               "unet config.json: addition_embed_type \"text_time\" needs ",
               "addition_time_embed_dim and projection_class_embeddings_input_dim");
  } catch (const json::exception& e) {
    DF_FAIL("unet config.json: ", e.what());
  }
  return c;
}

json UNetConfig::to_json() const {
  std::vector<std::string> down, up;
  for (bool a : down_has_attention) down.push_back(a ? "CrossAttnDownBlock2D" : "DownBlock2D");
  for (bool a : up_has_attention) up.push_back(a ? "CrossAttnUpBlock2D" : "UpBlock2D");
  json j = {
      {"_class_name", "UNet2DConditionModel"},
      {"act_fn", "silu"},
      {"in_channels", in_channels},
      {"out_channels", out_channels},
      {"block_out_channels", block_out_channels},
      {"down_block_types", down},
      {"mid_block_type", mid_block_has_attention ? "UNetMidBlock2DCrossAttn" : "UNetMidBlock2D"},
      {"up_block_types", up},
      {"layers_per_block", layers_per_block},
      {"num_attention_heads", nullptr},
      {"cross_attention_dim", cross_attention_dim},
      {"use_linear_projection", use_linear_projection},
      {"upcast_attention", upcast_attention},
      {"norm_num_groups", norm_num_groups},
      {"norm_eps", json_float(norm_eps)},
      {"flip_sin_to_cos", flip_sin_to_cos},
      {"freq_shift", json_float(freq_shift)},
      {"downsample_padding", downsample_padding}};
  // diffusers reads attention_head_dim as the head count when num_attention_heads is null
  if (all_equal(heads) && !heads.empty())
    j["attention_head_dim"] = heads.front();
  else
    j["attention_head_dim"] = heads;
  if (all_equal(transformer_layers_per_block))
    j["transformer_layers_per_block"] = transformer_layers_per_block.front();
  else
    j["transformer_layers_per_block"] = transformer_layers_per_block;
  j["reverse_transformer_layers_per_block"] = reverse_transformer_layers_per_block.empty()
                                                  ? json(nullptr)
                                                  : json(reverse_transformer_layers_per_block);
  if (has_text_time()) {
    j["addition_embed_type"] = addition_embed_type;
    j["addition_time_embed_dim"] = addition_time_embed_dim;
    j["projection_class_embeddings_input_dim"] = projection_class_embeddings_input_dim;
  } else {
    j["addition_embed_type"] = nullptr;
    j["addition_time_embed_dim"] = nullptr;
    j["projection_class_embeddings_input_dim"] = nullptr;
  }
  return j;
}

UNetConfig UNetConfig::infer_channels(const io::TensorMap& w) {
  UNetConfig c;
  auto in = w.find("conv_in.weight"), out = w.find("conv_out.weight");
  DF_CHECK(in != w.end() && out != w.end(), "unet: conv_in.weight or conv_out.weight is missing");
  c.in_channels = in->second.size(1);
  c.out_channels = out->second.size(0);
  return c;
}

UNetConfig UNetConfig::infer(const io::TensorMap& w) {
  auto has = [&](const std::string& k) { return w.count(k) > 0; };
  auto shape = [&](const std::string& k) -> const Shape& {
    auto it = w.find(k);
    DF_CHECK(it != w.end(), "unet: tensor ", k, " is missing");
    return it->second.shape();
  };
  // Transformer blocks of the attention at `prefix` ("down_blocks.1.attentions.0."); 0 if none.
  auto depth = [&](const std::string& prefix) {
    int64_t d = 0;
    while (has(prefix + "transformer_blocks." + std::to_string(d) + ".attn1.to_q.weight")) ++d;
    return d;
  };
  UNetConfig c = infer_channels(w);
  c.block_out_channels.clear();
  c.down_has_attention.clear();
  for (int64_t i = 0; has("down_blocks." + std::to_string(i) + ".resnets.0.conv1.weight"); ++i) {
    std::string p = "down_blocks." + std::to_string(i);
    c.block_out_channels.push_back(shape(p + ".resnets.0.conv1.weight")[0]);
    c.down_has_attention.push_back(has(p + ".attentions.0.proj_in.weight"));
  }
  const size_t n = c.block_out_channels.size();
  DF_CHECK(n > 0, "unet: no down blocks found");
  c.up_has_attention.clear();
  for (size_t i = 0; i < n; ++i)
    c.up_has_attention.push_back(
        has("up_blocks." + std::to_string(i) + ".attentions.0.proj_in.weight"));
  c.layers_per_block = 0;
  while (has("down_blocks.0.resnets." + std::to_string(c.layers_per_block) + ".conv1.weight"))
    ++c.layers_per_block;

  // Transformer depth: per down level (every attention of a level alike), the mid block's, and
  // per up level and layer (kept only when they are not the down levels' reversed).
  const std::string mid = "mid_block.attentions.0.";
  c.mid_block_has_attention = has(mid + "proj_in.weight");
  const int64_t mid_depth = c.mid_block_has_attention ? depth(mid) : 0;
  c.transformer_layers_per_block.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    if (!c.down_has_attention[i]) continue;
    const std::string p = "down_blocks." + std::to_string(i) + ".attentions.";
    c.transformer_layers_per_block[i] = depth(p + "0.");
    for (int64_t l = 1; l < c.layers_per_block; ++l)
      DF_CHECK(depth(p + std::to_string(l) + ".") == c.transformer_layers_per_block[i],
               "unet: the attentions of down level ", i, " differ in depth (",
               c.transformer_layers_per_block[i], " and ", depth(p + std::to_string(l) + "."),
               " transformer blocks), which is not supported");
  }
  // Levels without attention take the mid block's depth where it is the last level's (as in
  // SDXL's refiner), else 1; the mid block's depth must be the last level's.
  for (size_t i = 0; i < n; ++i)
    if (!c.down_has_attention[i])
      c.transformer_layers_per_block[i] = i + 1 == n && mid_depth > 0 ? mid_depth : 1;
  if (c.mid_block_has_attention)
    DF_CHECK(mid_depth == c.transformer_layers_per_block.back(), "unet: the mid block's ",
             mid_depth, " transformer blocks differ from the last down level's ",
             c.transformer_layers_per_block.back(), ", which is not supported");
  std::vector<std::vector<int64_t>> up(n);
  bool reversed = true;
  for (size_t i = 0; i < n; ++i) {
    for (int64_t l = 0; l <= c.layers_per_block; ++l) {
      const std::string p =
          "up_blocks." + std::to_string(i) + ".attentions." + std::to_string(l) + ".";
      const int64_t d =
          c.up_has_attention[i] ? depth(p) : c.transformer_layers_per_block[n - 1 - i];
      up[i].push_back(d);
      reversed &= d == c.transformer_layers_per_block[n - 1 - i];
    }
  }
  if (!reversed) c.reverse_transformer_layers_per_block = up;
  c.transformer_layers_per_block = single_if_equal(c.transformer_layers_per_block);

  // Cross-attention width and projection kind from any attention.
  std::string attn;
  if (c.mid_block_has_attention) attn = mid;
  for (size_t i = 0; attn.empty() && i < n; ++i)
    if (c.down_has_attention[i]) attn = "down_blocks." + std::to_string(i) + ".attentions.0.";
  DF_CHECK(!attn.empty(), "unet: no attention layer found");
  c.cross_attention_dim = shape(attn + "transformer_blocks.0.attn2.to_k.weight")[1];
  c.use_linear_projection = shape(attn + "proj_in.weight").size() == 2;
  c.heads.clear();
  for (size_t i = 0; i < n; ++i) {
    const int64_t ch = c.block_out_channels[i];
    // 0 = unknown: the model refuses to be built until a config gives the count.
    if (!c.use_linear_projection)
      c.heads.push_back(8);
    else
      c.heads.push_back(ch % 64 == 0 ? ch / 64 : 0);
  }
  // SD2 upcasts its attention; SDXL (added embeddings) does not.
  c.upcast_attention = c.use_linear_projection && !has("add_embedding.linear_1.weight");

  if (has("add_embedding.linear_1.weight")) {
    c.addition_embed_type = "text_time";
    const int64_t in = shape("add_embedding.linear_1.weight")[1];
    c.projection_class_embeddings_input_dim = in;
    constexpr int64_t kPublished = 256;  // SDXL's addition_time_embed_dim
    if (in > 5 * kPublished)
      c.addition_time_embed_dim = kPublished;
    else if (in > c.cross_attention_dim && (in - c.cross_attention_dim) % 5 == 0)
      c.addition_time_embed_dim = (in - c.cross_attention_dim) / 5;
    else
      c.addition_time_embed_dim = 0;  // unknown: the model asks for a config
  }
  return c;
}

}  // namespace diffuse::models
