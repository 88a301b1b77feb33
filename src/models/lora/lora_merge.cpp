#include "models/lora/lora_merge.h"

#include "core/error.h"
#include "ops/ops.h"

namespace diffuse::models {

LoraMerger::LoraMerger(const UNet2DConditionModel* unet, const ClipTextModel* text_encoder)
    : names_(unet, text_encoder) {}

LoraMerger::~LoraMerger() {
  restore();
}

void LoraMerger::merge(const LoraFile& file, const std::string& what, float unet_multiplier,
                       float text_encoder_multiplier) {
  std::vector<std::string> unknown, misfit;
  struct Todo {
    const std::string* name;
    const LoraLayer* layer;
    const LoraModule* module;
  };
  std::vector<Todo> todo;
  for (auto& [name, m] : file.modules) {
    const LoraLayer* layer = names_.find(name);
    if (!layer) {
      unknown.push_back(name);
      continue;
    }
    if (!m.fits(layer->shape)) {
      misfit.push_back(name + " (" + shape_str(m.up.shape()) + " x " + shape_str(m.down.shape()) +
                       " for " + shape_str(layer->shape) + ")");
      continue;
    }
    todo.push_back({&name, layer, &m});
  }
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + v[i];
    return v.size() > 8 ? s + str(", ... ", v.size() - 8, " more") : s;
  };
  DF_CHECK(unknown.empty(), what, ": ", unknown.size(), " of ", file.modules.size(),
           " LoRA modules name no layer of this model (", list(unknown),
           "); is the LoRA made for another model family?");
  DF_CHECK(misfit.empty(), what, ": ", misfit.size(),
           " LoRA modules do not fit their layer's weight (", list(misfit),
           "); is the LoRA made for another model family?");
  for (auto& [name, layer, m] : todo) {
    const float mult = layer->part == LoraPart::Unet ? unet_multiplier : text_encoder_multiplier;
    if (mult == 0) continue;
    Tensor& w = *layer->weight;
    DF_CHECK(w.defined(), what, ": the layer ", layer->module, " is not loaded");
    originals_.emplace(layer->weight, w);  // keeps the first (original) weight
    const Tensor delta = m->delta(mult, layer->shape, *name);
    w = ops::add(w.to(DType::F32), delta).to(w.dtype());
  }
  ops::clear_weight_cache();  // new weights may reuse the addresses of freed ones
}

void LoraMerger::restore() {
  if (originals_.empty()) return;
  for (auto& [slot, original] : originals_) *slot = original;
  originals_.clear();
  ops::clear_weight_cache();
}

}  // namespace diffuse::models
