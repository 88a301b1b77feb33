// A Stable Diffusion model as the user names it: a diffusers folder or a single file
// (safetensors, PyTorch .ckpt, GGUF) in the original LDM layout. Opening it maps every
// tensor to the canonical (diffusers/transformers) names, split by component.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "io/tensor_map.h"

namespace diffuse::io {

enum class ModelLayout { DiffusersFolder, SingleFile };

// Which text encoder naming a single file uses.
enum class TextEncoderLayout {
  None,
  ClipHF /* SD1: cond_stage_model.transformer.* */,
  OpenClip /* SD2: cond_stage_model.model.* */,
  // SDXL (Stability's generative-models): conditioner.embedders.N.transformer.* (transformers
  // CLIP: text_encoder) and conditioner.embedders.N.model.* (OpenCLIP with its projection:
  // text_encoder_2); the base holds both (N = 0, 1), the refiner only the OpenCLIP one (N = 0).
  Conditioner,
};

struct ModelFiles {
  std::string path;
  ModelLayout layout = ModelLayout::SingleFile;
  TextEncoderLayout text_layout = TextEncoderLayout::None;
  // Canonical names without the component prefix, e.g. unet:
  // "down_blocks.0.resnets.0.conv1.weight", vae: "decoder.conv_in.weight", text_encoder:
  // "text_model.encoder.layers.0.mlp.fc1.weight". text_encoder_2 (SDXL) is transformers'
  // CLIPTextModelWithProjection: text_model.* and text_projection.weight; an SDXL refiner has it
  // without text_encoder.
  TensorMap unet, vae, text_encoder, text_encoder_2;
  // Diffusers folders: the component config.json files (null when absent: single files).
  nlohmann::json unet_config, vae_config, text_encoder_config, text_encoder_2_config,
      scheduler_config, model_index;
  // Diffusers folders: tokenizer/vocab.json and tokenizer/merges.txt ("" when absent), and the
  // pad token text from tokenizer/special_tokens_map.json or tokenizer_config.json ("" if absent);
  // the same of tokenizer_2/ (SDXL).
  std::string tokenizer_vocab, tokenizer_merges, tokenizer_pad_token;
  std::string tokenizer_2_vocab, tokenizer_2_merges, tokenizer_2_pad_token;
  // Single files: text encoder blocks present in the file but unused by the published model
  // (SD2's OpenCLIP holds one more than it uses); they are dropped from text_encoder and counted
  // here so clip skip can be counted against the published encoder.
  int dropped_text_layers = 0;
  // Tensors of the file that belong to no component (e.g. model_ema.*, ids) and were ignored.
  std::vector<std::string> ignored;
};

// Opens a diffusers folder (model_index.json) or single file. Throws a clear Error naming the
// path when it is neither, or when the tensors are not a Stable Diffusion checkpoint. A GGUF
// file's quantized tensors are dequantized to `dequantized` (see load_gguf).
ModelFiles open_model(const std::string& path, DType dequantized = DType::F32);

// Reads one component folder (config.json + weights) into `m`'s tensors and config of
// `component` ("unet", "vae", "text_encoder" or "text_encoder_2"), as open_model does for a
// diffusers folder's component folders (the same name clean-ups).
void read_component_folder(const std::string& dir, const std::string& component, ModelFiles& m);

// Reads a tokenizer folder's vocab.json, merges.txt and pad token into `m`'s tokenizer_* fields
// (`tokenizer` "tokenizer") or tokenizer_2_* fields ("tokenizer_2"); fields of absent files are
// left empty, as open_model does for a diffusers folder's tokenizer/ and tokenizer_2/.
void read_tokenizer_folder(const std::string& dir, ModelFiles& m,
                           const std::string& tokenizer = "tokenizer");

}  // namespace diffuse::io
