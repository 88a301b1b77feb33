#include "models/lora/lora_names.h"

#include "io/name_map_ldm.h"
#include "models/lora/lora_file.h"

namespace diffuse::models {

namespace {

// ResnetBlock2D's layers -> LDM ResBlock's sequential layers (the inverse of io's ResBlock map).
constexpr std::pair<std::string_view, std::string_view> kResnetLdm[] = {
    {"norm1", "in_layers.0"},  {"conv1", "in_layers.2"},  {"time_emb_proj", "emb_layers.1"},
    {"norm2", "out_layers.0"}, {"conv2", "out_layers.3"}, {"conv_shortcut", "skip_connection"},
};
// Modules outside the blocks.
constexpr std::pair<std::string_view, std::string_view> kTopLdm[] = {
    {"conv_in", "input_blocks.0.0"},
    {"time_embedding.linear_1", "time_embed.0"},
    {"time_embedding.linear_2", "time_embed.2"},
    {"conv_norm_out", "out.0"},
    {"conv_out", "out.2"},
};

std::vector<std::string> split(const std::string& name) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t dot; (dot = name.find('.', start)) != std::string::npos; start = dot + 1)
    parts.push_back(name.substr(start, dot - start));
  parts.push_back(name.substr(start));
  return parts;
}

std::string join(const std::vector<std::string>& parts, size_t from) {
  std::string s;
  for (size_t i = from; i < parts.size(); ++i) s += (s.empty() ? "" : ".") + parts[i];
  return s;
}

int64_t index(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos ? std::stoll(s) : -1;
}

// The LDM name of one canonical UNet tensor name, "" when it has none.
std::string ldm_name(const std::string& name, const UNetConfig& c) {
  for (auto& [from, to] : kTopLdm)
    if (name.rfind(std::string(from) + ".", 0) == 0)
      return std::string(to) + name.substr(from.size());
  const auto p = split(name);
  if (p.size() < 4) return "";
  // "<list>.<k>.<sub>.<tail>", or "" when the tail did not map
  auto at = [](const std::string& list, int64_t k, const std::string& sub,
               const std::string& tail) {
    return tail.empty() ? std::string() : list + "." + std::to_string(k) + "." + sub + tail;
  };
  auto resnet_tail = [&](size_t from) -> std::string {
    for (auto& [layer, ldm] : kResnetLdm)
      if (from + 1 < p.size() && p[from] == layer)
        return std::string(ldm) + "." + join(p, from + 1);
    return "";
  };
  if (p[0] == "mid_block") {  // middle_block.J: resnet, attention, resnet
    const int64_t j = index(p[2]);
    if (p[1] == "attentions" && j == 0) return at("middle_block", 1, "", join(p, 3));
    if (p[1] == "resnets" && j >= 0) return at("middle_block", 2 * j, "", resnet_tail(3));
    return "";
  }
  const int64_t per_level = c.layers_per_block + 1, i = index(p[1]), j = index(p[3]);
  if (i < 0 || j < 0) return "";
  if (p[0] == "down_blocks") {  // input_blocks.0 is conv_in; each level: layers + downsampler
    const int64_t k = 1 + i * per_level + j;
    if (p[2] == "resnets") return at("input_blocks", k, "0.", resnet_tail(4));
    if (p[2] == "attentions") return at("input_blocks", k, "1.", join(p, 4));
    if (p[2] == "downsamplers" && p.size() > 4 && p[4] == "conv")
      return at("input_blocks", 1 + i * per_level + c.layers_per_block, "0.op.", join(p, 5));
  } else if (p[0] == "up_blocks") {  // each level: layers + 1, the upsampler in the last
    const int64_t k = i * per_level + j;
    if (p[2] == "resnets") return at("output_blocks", k, "0.", resnet_tail(4));
    if (p[2] == "attentions") return at("output_blocks", k, "1.", join(p, 4));
    const bool attention = size_t(i) < c.up_has_attention.size() && c.up_has_attention[size_t(i)];
    if (p[2] == "upsamplers" && p.size() > 4 && p[4] == "conv")
      return at("output_blocks", i * per_level + c.layers_per_block,
                attention ? "2.conv." : "1.conv.", join(p, 5));
  }
  return "";
}

}  // namespace

std::map<std::string, std::string> unet_ldm_module_paths(const UNet2DConditionModel& unet) {
  io::NamedShapes ldm;
  std::map<std::string, std::string> canonical_of;  // LDM tensor name -> canonical
  for (auto& p : unet.named_parameters()) {
    const std::string n = ldm_name(p.name, unet.config());
    if (n.empty()) continue;
    ldm.emplace_back(n, p.shape);
    canonical_of[n] = p.name;
  }
  std::vector<io::TensorMapping> mapped;
  std::vector<std::string> unmapped;
  io::map_unet_ldm(ldm, mapped, unmapped);
  std::map<std::string, std::string> paths;
  const std::string_view w = ".weight";
  for (auto& m : mapped) {
    const std::string& canonical = canonical_of[m.source];
    if (m.target != canonical || canonical.size() <= w.size() ||
        canonical.compare(canonical.size() - w.size(), w.size(), w) != 0)
      continue;  // only weights that map back to themselves name a module
    paths[canonical.substr(0, canonical.size() - w.size())] =
        m.source.substr(0, m.source.size() - w.size());
  }
  return paths;
}

LoraNames::LoraNames(const UNet2DConditionModel* unet, const ClipTextModel* text_encoder) {
  // Linear and Conv2d weights: 2-D or 4-D "weight"s, except embedding tables.
  auto layers = [](const nn::Module& m, LoraPart part) {
    std::vector<LoraLayer> out;
    const std::string w = ".weight";
    for (auto& p : m.named_parameters()) {
      if (p.name.size() <= w.size() || p.name.compare(p.name.size() - w.size(), w.size(), w) != 0)
        continue;
      const std::string module = p.name.substr(0, p.name.size() - w.size());
      const std::string leaf = module.substr(module.rfind('.') + 1);
      const bool embedding = leaf.size() >= 9 && leaf.compare(leaf.size() - 9, 9, "embedding") == 0;
      if ((p.shape.size() == 2 || p.shape.size() == 4) && !embedding)
        out.push_back({part, module, p.tensor, p.shape});
    }
    return out;
  };
  if (unet) {
    const auto ldm = unet_ldm_module_paths(*unet);
    for (auto& l : layers(*unet, LoraPart::Unet)) {
      add(kohya_lora_name("lora_unet", l.module), l);
      if (auto it = ldm.find(l.module); it != ldm.end())
        add(kohya_lora_name("lora_unet", it->second), l);
    }
  }
  if (text_encoder) {
    for (auto& l : layers(*text_encoder, LoraPart::TextEncoder)) {
      add(kohya_lora_name("lora_te", l.module), l);
      add(kohya_lora_name("lora_te1", l.module), l);
    }
  }
}

void LoraNames::add(const std::string& name, const LoraLayer& layer) {
  if (ambiguous_.count(name)) return;
  auto [it, fresh] = names_.emplace(name, layer);
  if (fresh || (it->second.part == layer.part && it->second.module == layer.module)) return;
  names_.erase(it);
  ambiguous_[name] = 1;
}

const LoraLayer* LoraNames::find(const std::string& kohya_name) const {
  auto it = names_.find(kohya_name);
  return it == names_.end() ? nullptr : &it->second;
}

}  // namespace diffuse::models
