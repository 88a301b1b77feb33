#include "models/lora/lora_names.h"

#include "core/error.h"
#include "io/name_map_inverse.h"
#include "models/lora/lora_file.h"

namespace diffuse::models {

std::map<std::string, std::string> unet_ldm_module_paths(const UNet2DConditionModel& unet) {
  io::NamedShapes names;
  for (auto& p : unet.named_parameters()) names.emplace_back(p.name, p.shape);
  io::LdmLayoutPlan plan;
  try {
    plan = io::plan_ldm_layout(names, {}, {}, io::TextEncoderLayout::None);
  } catch (const Error&) {
    return {};  // a UNet with tensors the LDM layout has no place for: diffusers names only
  }
  std::map<std::string, std::string> paths;
  const std::string prefix = "model.diffusion_model.", w = ".weight";
  for (auto& m : plan.tensors) {
    if (!m.source.starts_with(prefix) || !m.source.ends_with(w) || !m.target.ends_with(w)) continue;
    paths[m.target.substr(0, m.target.size() - w.size())] =
        m.source.substr(prefix.size(), m.source.size() - prefix.size() - w.size());
  }
  return paths;
}

LoraNames::LoraNames(const UNet2DConditionModel* unet, const ClipTextModel* text_encoder,
                     const ClipTextModel* text_encoder_2) {
  // Linear and Conv2d weights: 2-D or 4-D "weight"s, except embedding tables; with their biases.
  auto layers = [](const nn::Module& m, LoraPart part) {
    std::vector<LoraLayer> out;
    std::map<std::string, Tensor*> biases;
    const std::string w = ".weight", b = ".bias";
    const auto params = m.named_parameters();
    for (auto& p : params)
      if (p.name.ends_with(b)) biases[p.name.substr(0, p.name.size() - b.size())] = p.tensor;
    for (auto& p : params) {
      if (!p.name.ends_with(w)) continue;
      const std::string module = p.name.substr(0, p.name.size() - w.size());
      auto bias = biases.find(module);
      if ((p.shape.size() == 2 || p.shape.size() == 4) && !module.ends_with("embedding"))
        out.push_back(
            {part, module, p.tensor, p.shape, bias == biases.end() ? nullptr : bias->second});
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
  if (text_encoder_2)
    for (auto& l : layers(*text_encoder_2, LoraPart::TextEncoder2))
      add(kohya_lora_name("lora_te2", l.module), l);
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
