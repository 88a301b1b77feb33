// LoRA files in kohya's format (sd-scripts, read by AUTOMATIC1111 and ComfyUI): for each changed
// layer, "<name>.lora_down.weight" [rank, in] (or [rank, in, kh, kw] for a convolution),
// "<name>.lora_up.weight" [out, rank] (or [out, rank, 1, 1]) and "<name>.alpha" (a scalar), where
// <name> is "lora_unet_" or "lora_te_" and the layer's module path with '.' replaced by '_'.
// The layer's weight becomes W + multiplier * alpha / rank * up @ down.
#pragma once
#include <map>
#include <string>
#include <string_view>

#include "core/tensor.h"
#include "io/tensor_map.h"

namespace diffuse::models {

struct LoraModule {
  Tensor down;      // [rank, in] or [rank, in, kh, kw]
  Tensor up;        // [out, rank] or [out, rank, 1, 1]
  float alpha = 0;  // the file's alpha; rank when the file has none (scale 1)

  int64_t rank() const { return down.size(0); }
  float scale() const { return alpha / float(rank()); }
  // True when up @ down has a layer weight's shape `w`: a Linear's [out, in] or a Conv2d's
  // [out, in, kh, kw]; a 1x1 convolution's LoRA fits a Linear and the other way round.
  bool fits(const Shape& w) const;
  // multiplier * scale * up @ down in f32, shaped as `weight_shape`. Throws naming `name` when
  // the shapes do not fit.
  Tensor delta(float multiplier, const Shape& weight_shape, const std::string& name) const;
};

// A LoRA file: its modules by kohya name ("lora_unet_down_blocks_0_..._to_q") and metadata
// (kohya's ss_* keys).
struct LoraFile {
  std::map<std::string, LoraModule> modules;
  io::Metadata metadata;
};

// Reads a kohya LoRA .safetensors. Strict: every tensor must be a module's lora_down.weight,
// lora_up.weight or alpha, every module needs both matrices with fitting shapes; otherwise one
// Error names the file and the offending keys (LyCORIS LoHa/LoKr and DoRA files are named as
// such: they are not plain LoRA).
LoraFile read_lora_file(const std::string& path);
// Writes atomically; the matrices in `dtype` (F16 as kohya saves by default, or F32), the
// alphas as f32 scalars.
void write_lora_file(const std::string& path, const LoraFile& file, DType dtype = DType::F16);

// kohya's name of a module: kohya_lora_name("lora_unet", "mid_block.attentions.0.proj_in")
// == "lora_unet_mid_block_attentions_0_proj_in".
std::string kohya_lora_name(std::string_view prefix, std::string_view module_path);

}  // namespace diffuse::models
