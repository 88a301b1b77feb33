// Writes a Stable Diffusion model (canonical tensors per component, plus configs) in the
// published layouts: a diffusers folder, or one .safetensors file in the original LDM layout.
// The inverse of open_model(): what save_model writes, open_model reads back to the same
// canonical tensors.
#pragma once
#include <optional>
#include <string>

#include "core/dtype.h"
#include "io/model_files.h"

namespace diffuse::io {

struct SaveOptions {
  // Converts every floating-point tensor to this dtype (f32, f16 or bf16); nullopt keeps each
  // tensor's own dtype. Integer tensors are never converted.
  std::optional<DType> dtype;
  // safetensors __metadata__ of every weights file written ("format": "pt" is added unless
  // given: transformers refuses safetensors files without it).
  Metadata metadata;
  // Single files: how to write the text encoder. None picks ModelFiles::text_layout when set,
  // else Conditioner when there is a text_encoder_2 (SDXL), else OpenCLIP when the text
  // config's hidden_act is "gelu" (SD2), else transformers CLIP.
  TextEncoderLayout text_layout = TextEncoderLayout::None;
};

// Writes `m` to `path`:
// - DiffusersFolder: model_index.json; unet/ and vae/ (config.json +
//   diffusion_pytorch_model.safetensors), text_encoder/ and text_encoder_2/ (config.json +
//   model.safetensors), scheduler/scheduler_config.json, tokenizer/ and tokenizer_2/ (vocab.json,
//   merges.txt when ModelFiles has them; special_tokens_map.json and tokenizer_config.json with
//   the pad token). Components without
//   tensors are left out (model_index.json lists them as [null, null]); each one written needs
//   its config (ModelFiles::*_config: save_model does not infer configs).
// - SingleFile: one .safetensors with model.diffusion_model.*, first_stage_model.* and
//   cond_stage_model.transformer.text_model.* (transformers CLIP) or cond_stage_model.model.*
//   (OpenCLIP, q/k/v fused into in_proj, plus the zero-filled unused last block: see
//   name_map_inverse.h), or SDXL's conditioner.embedders.* when there is a text_encoder_2.
//   The VAE attention projections go back to 1x1 convolutions.
// Everything is written beside `path` first and renamed into place when complete; an existing
// `path` is replaced only then, and only when it is the same kind of thing (a diffusers folder,
// i.e. one with model_index.json, or an empty folder; a file for a file). On any error nothing
// at `path` changes and no temporary file is left behind.
void save_model(const ModelFiles& m, const std::string& path, ModelLayout layout,
                const SaveOptions& o = {});

// The tensors of the single file that save_model(SingleFile) writes, before dtype conversion
// (views of `m`'s tensors where no op applies).
TensorMap single_file_tensors(const ModelFiles& m, TextEncoderLayout text_layout);

// The text encoder layout save_model(SingleFile) uses for `m` when none is asked for.
TextEncoderLayout single_file_text_layout(const ModelFiles& m);

// "f16" / "fp16" / "float16", "bf16" / "bfloat16", "f32" / "fp32" / "float32"; throws otherwise.
DType parse_save_dtype(const std::string& s);

}  // namespace diffuse::io
