// Model families as data: one row per family (SD1, SD2, SDXL, the SDXL refiner). What differs
// between them (text encoders and how their outputs combine, clip-skip counting, default size,
// prediction type, added conditioning) is a field of the row; code asks the row, never
// `if (family == ...)`. Detecting a family from a model's files is one function.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "io/model_files.h"

namespace diffuse::pipeline {

// The UNet's added time conditioning (diffusers' `add_time_ids`).
enum class TimeIds {
  None,
  SizeCropTarget,     // SDXL base: original (h, w), crop (top, left), target (h, w)
  SizeCropAesthetic,  // SDXL refiner: original (h, w), crop (top, left), aesthetic score
};

struct FamilyInfo {
  std::string_view id;    // "sd1", "sd2", "sdxl", "sdxl-refiner"
  std::string_view name;  // as `info` and logs print it: "SD1", "SDXL", ...
  // The image side without a UNet sample_size (single files); a v-prediction model of the
  // family defaults to default_size_v (SD2 768-v).
  int64_t default_size = 512, default_size_v = 512;
  std::string_view prediction_type = "epsilon";  // published default (scheduler config wins)
  std::string_view scheduler = "PNDMScheduler";   // the published pipeline's scheduler class
  // Which text encoders condition the UNet. With both, their contexts are concatenated along
  // the width (text_encoder first), and the pooled vector is text_encoder_2's projected one.
  bool text_encoder = true, text_encoder_2 = false;
  // The context passes the encoder's final layer norm (SD1, SD2) or not (SDXL's penultimate
  // hidden states are used as they are).
  bool context_final_norm = true;
  // Clip skip as AUTOMATIC1111 counts it: 1 = the last block, 2 = the penultimate, ...
  int64_t default_clip_skip = 1;
  // The published tokenizers' pad tokens (single files carry no tokenizer).
  std::string_view pad_token = "<|endoftext|>", pad_token_2 = "!";
  // The first text encoder's activation: OpenAI's CLIP (quick_gelu) or OpenCLIP (gelu).
  std::string_view text_activation = "quick_gelu";
  // Blocks of the published text encoder that Stable Diffusion never runs (SD2: one).
  int64_t unused_text_layers = 0;
  TimeIds time_ids = TimeIds::None;
  // diffusers' force_zeros_for_empty_prompt: an empty negative prompt conditions on zeros
  // (the model_index.json of a diffusers folder may say otherwise).
  bool zeros_for_empty_negative = false;

  // The default image side for a model of this family that predicts `prediction_type`.
  int64_t default_side(std::string_view prediction) const {
    return prediction == "v_prediction" ? default_size_v : default_size;
  }
  // The number of time ids the UNet takes.
  int64_t time_id_count() const {
    return time_ids == TimeIds::SizeCropTarget ? 6 : time_ids == TimeIds::SizeCropAesthetic ? 5 : 0;
  }
};

// Every family, in the order `detect_family` tries them.
const std::vector<FamilyInfo>& families();
// The row of `id` ("sd1", ...); throws naming the known ids.
const FamilyInfo& family_by_id(std::string_view id);

// The family of a model from its files alone: a second text encoder or an added-embedding UNet
// is SDXL (the refiner without a first text encoder); otherwise an OpenCLIP first text encoder
// (gelu, from its config or its single-file layout) is SD2, else SD1. `text_activation` is the
// first text encoder's hidden_act when known ("" otherwise).
const FamilyInfo& detect_family(const io::ModelFiles& files, std::string_view text_activation);

// The name a model is shown under: the family's, with "-inpaint" for a 9-channel UNet.
std::string family_display_name(const FamilyInfo& f, bool inpaint);

}  // namespace diffuse::pipeline
