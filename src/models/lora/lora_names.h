// The names LoRA files give a model's layers, resolved against the model's real modules: every
// Linear and Conv2d weight of the UNet and of the text encoder, under
//   lora_unet_<diffusers path>   (kohya's sd-scripts: lora_unet_down_blocks_0_attentions_0_...)
//   lora_unet_<LDM path>         (older files: lora_unet_input_blocks_1_1_transformer_blocks_0_...)
//   lora_te_<transformers path>  (lora_te_text_model_encoder_layers_0_self_attn_q_proj; also
//                                 lora_te1_, SDXL's name for the same CLIP-L encoder)
//   lora_te2_<transformers path> (SDXL's second, OpenCLIP text encoder)
// with '.' joined as '_'. A name that two different modules would share is ambiguous and
// resolves to nothing (none does in SD 1.x / 2.x).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "models/clip/clip_text_model.h"
#include "models/unet/unet_2d_condition.h"

namespace diffuse::models {

enum class LoraPart { Unet, TextEncoder, TextEncoder2 };

struct LoraLayer {
  LoraPart part = LoraPart::Unet;
  std::string module;        // canonical module path ("mid_block.attentions.0.proj_in")
  Tensor* weight = nullptr;  // the layer's weight slot
  Shape shape;               // the weight's shape
  Tensor* bias = nullptr;    // the layer's bias slot; null when it has none
};

class LoraNames {
 public:
  // Either model may be null (its names are then unknown). The models need not be loaded.
  LoraNames(const UNet2DConditionModel* unet, const ClipTextModel* text_encoder,
            const ClipTextModel* text_encoder_2 = nullptr);

  // The layer a kohya module name means, or null (unknown or ambiguous).
  const LoraLayer* find(const std::string& kohya_name) const;
  // Every name that resolves, with its layer (diffusers, LDM and text encoder names).
  const std::map<std::string, LoraLayer>& names() const { return names_; }

 private:
  void add(const std::string& name, const LoraLayer& layer);
  std::map<std::string, LoraLayer> names_;
  std::map<std::string, int> ambiguous_;
};

// The LDM (original single-file) path of each UNet module with a weight, e.g.
// "down_blocks.0.attentions.1.proj_in" -> "input_blocks.2.1.proj_in" (io's inverse single-file
// name map, itself checked against the forward map); empty when the UNet has no LDM layout.
std::map<std::string, std::string> unet_ldm_module_paths(const UNet2DConditionModel& unet);

}  // namespace diffuse::models
