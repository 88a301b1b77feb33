// LoRA files as kohya's sd-scripts and LyCORIS write them (read by AUTOMATIC1111 and ComfyUI):
// for each changed layer, tensors "<name>.<key>" where <name> is "lora_unet_" or "lora_te_" and
// the layer's module path with '.' replaced by '_', and the keys say the module's type
// (lora_module.h):
//   LoRA / LoCon  lora_down.weight, lora_up.weight, lora_mid.weight (Tucker)
//   LoHa          hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b, hada_t1, hada_t2 (Tucker)
//   LoKr          lokr_w1 or lokr_w1_a + lokr_w1_b, lokr_w2 or lokr_w2_a + lokr_w2_b, lokr_t2
//   full          diff, diff_b (the bias' change)
// each with an optional scalar "alpha". One file may mix the types.
#pragma once
#include <map>
#include <string>
#include <string_view>

#include "io/tensor_map.h"
#include "models/lora/lora_module.h"

namespace diffuse::models {

// A LoRA file: its modules by kohya name ("lora_unet_down_blocks_0_..._to_q") and metadata
// (kohya's ss_* keys).
struct LoraFile {
  std::map<std::string, LoraModule> modules;
  io::Metadata metadata;
};

// Reads a kohya / LyCORIS LoRA .safetensors. Strict: every tensor must be one of the keys above
// (and all of one module's of one type), every module needs its type's factors with shapes that
// fit together; otherwise one Error names the file, the modules and their keys (a module of
// another type, e.g. IA3 or OFT, by its keys; DoRA's dora_scale as not supported).
LoraFile read_lora_file(const std::string& path);
// Writes atomically; the factors in `dtype` (F16 as kohya saves by default, BF16 or F32), the
// alphas (of modules with a dim) as f32 scalars.
void write_lora_file(const std::string& path, const LoraFile& file, DType dtype = DType::F16);

// kohya's name of a module: kohya_lora_name("lora_unet", "mid_block.attentions.0.proj_in")
// == "lora_unet_mid_block_attentions_0_proj_in".
std::string kohya_lora_name(std::string_view prefix, std::string_view module_path);

}  // namespace diffuse::models
