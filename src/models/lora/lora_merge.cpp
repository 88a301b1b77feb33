#include "models/lora/lora_merge.h"

#include "core/error.h"
#include "ops/ops.h"

namespace diffuse::models {

LoraMerger::LoraMerger(const UNet2DConditionModel* unet, const ClipTextModel* text_encoder,
                       const ClipTextModel* text_encoder_2)
    : names_(unet, text_encoder, text_encoder_2) {}

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
    Shape delta;
    try {
      delta = m.delta_shape(name);
    } catch (const Error& e) {
      misfit.push_back(e.what());
      continue;
    }
    if (!m.fits(layer->shape)) {
      misfit.push_back(str(name, " (", lora_type_name(m.type), " ", shape_str(delta), " for ",
                           shape_str(layer->shape), ")"));
      continue;
    }
    if (m.diff_b.defined() &&
        (!layer->bias || !layer->bias->defined() || layer->bias->shape() != m.diff_b.shape())) {
      misfit.push_back(str(name, " (diff_b ", shape_str(m.diff_b.shape()), " for ",
                           layer->bias && layer->bias->defined()
                               ? "bias " + shape_str(layer->bias->shape())
                               : std::string("a layer without bias"),
                           ")"));
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
    DF_CHECK(layer->weight->defined(), what, ": the layer ", layer->module, " is not loaded");
    add_to(layer->weight, m->delta(mult, layer->shape, *name));
    if (Tensor b = m->bias_delta(mult); b.defined()) add_to(layer->bias, b);
  }
  ops::clear_weight_cache();  // new weights may reuse the addresses of freed ones
}

void LoraMerger::add_to(Tensor* slot, const Tensor& delta) {
  originals_.emplace(slot, *slot);  // keeps the first (original) tensor
  *slot = ops::add(slot->to(DType::F32), delta).to(slot->dtype());
}

void LoraMerger::restore() {
  if (originals_.empty()) return;
  for (auto& [slot, original] : originals_) *slot = original;
  originals_.clear();
  ops::clear_weight_cache();
}

}  // namespace diffuse::models
