#include "models/unet/unet_config.h"

#include "core/error.h"
#include "models/config_json.h"

namespace diffuse::models {

namespace {

std::vector<int64_t> int_or_list(const nlohmann::json& v, size_t n) {
  if (v.is_array()) return v.get<std::vector<int64_t>>();
  return std::vector<int64_t>(n, v.get<int64_t>());
}

}  // namespace

UNetConfig UNetConfig::from_json(const nlohmann::json& j) {
  UNetConfig c;
  try {
    auto get = [&](const char* k, auto& v) {
      if (j.contains(k) && !j[k].is_null()) j[k].get_to(v);
    };
    get("in_channels", c.in_channels);
    get("out_channels", c.out_channels);
    get("block_out_channels", c.block_out_channels);
    const size_t n = c.block_out_channels.size();
    DF_CHECK(n >= 1, "unet config.json: block_out_channels is empty");
    if (j.contains("down_block_types")) {
      auto t = j["down_block_types"].get<std::vector<std::string>>();
      DF_CHECK(t.size() == n, "unet config.json: ", t.size(), " down blocks for ", n, " levels");
      c.down_has_attention.clear();
      for (auto& s : t) c.down_has_attention.push_back(s.find("CrossAttn") != std::string::npos);
    }
    if (j.contains("up_block_types")) {
      auto t = j["up_block_types"].get<std::vector<std::string>>();
      DF_CHECK(t.size() == n, "unet config.json: ", t.size(), " up blocks for ", n, " levels");
      c.up_has_attention.clear();
      for (auto& s : t) c.up_has_attention.push_back(s.find("CrossAttn") != std::string::npos);
    }
    get("layers_per_block", c.layers_per_block);
    if (j.contains("transformer_layers_per_block") && j["transformer_layers_per_block"].is_number())
      c.transformer_layers_per_block = j["transformer_layers_per_block"].get<int64_t>();
    // num_attention_heads wins when given; otherwise attention_head_dim holds the head count.
    if (j.contains("num_attention_heads") && !j["num_attention_heads"].is_null())
      c.heads = int_or_list(j["num_attention_heads"], n);
    else if (j.contains("attention_head_dim") && !j["attention_head_dim"].is_null())
      c.heads = int_or_list(j["attention_head_dim"], n);
    else
      c.heads.assign(n, 8);
    DF_CHECK(c.heads.size() == n, "unet config.json: ", c.heads.size(), " head counts for ", n,
             " levels");
    get("cross_attention_dim", c.cross_attention_dim);
    get("use_linear_projection", c.use_linear_projection);
    get("upcast_attention", c.upcast_attention);
    get("norm_num_groups", c.norm_num_groups);
    get("norm_eps", c.norm_eps);
    get("flip_sin_to_cos", c.flip_sin_to_cos);
    get("freq_shift", c.freq_shift);
    get("downsample_padding", c.downsample_padding);
  } catch (const nlohmann::json::exception& e) {
    DF_FAIL("unet config.json: ", e.what());
  }
  return c;
}

nlohmann::json UNetConfig::to_json() const {
  std::vector<std::string> down, up;
  for (bool a : down_has_attention) down.push_back(a ? "CrossAttnDownBlock2D" : "DownBlock2D");
  for (bool a : up_has_attention) up.push_back(a ? "CrossAttnUpBlock2D" : "UpBlock2D");
  bool same_heads = true;
  for (int64_t h : heads) same_heads &= h == heads.front();
  nlohmann::json j = {{"_class_name", "UNet2DConditionModel"},
                      {"act_fn", "silu"},
                      {"in_channels", in_channels},
                      {"out_channels", out_channels},
                      {"block_out_channels", block_out_channels},
                      {"down_block_types", down},
                      {"mid_block_type", "UNetMidBlock2DCrossAttn"},
                      {"up_block_types", up},
                      {"layers_per_block", layers_per_block},
                      {"transformer_layers_per_block", transformer_layers_per_block},
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
  if (same_heads && !heads.empty())
    j["attention_head_dim"] = heads.front();
  else
    j["attention_head_dim"] = heads;
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
  const std::string attn = "mid_block.attentions.0.";
  c.transformer_layers_per_block = 0;
  while (has(attn + "transformer_blocks." + std::to_string(c.transformer_layers_per_block) +
             ".attn1.to_q.weight"))
    ++c.transformer_layers_per_block;
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
  c.upcast_attention = c.use_linear_projection;
  return c;
}

}  // namespace diffuse::models
