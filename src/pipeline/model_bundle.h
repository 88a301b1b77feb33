// ModelBundle: a Stable Diffusion model opened from any form (diffusers folder, single
// safetensors, .ckpt, GGUF), its family detected and its configs resolved, with the parts
// loaded on demand.
#pragma once
#include <memory>
#include <string>

#include "io/model_files.h"
#include "models/clip/clip_text_model.h"
#include "models/lora/lora_merge.h"
#include "models/unet/unet_2d_condition.h"
#include "models/vae/autoencoder_kl.h"
#include "ops/ops.h"
#include "pipeline/conditioning.h"
#include "pipeline/family.h"
#include "tokenizer/clip_tokenizer.h"

namespace diffuse::pipeline {

// Compute precision of the models. fp32 is exact (the reference). bf16 keeps the weights of the
// linear, convolution and embedding layers in 16 bits (as stored when the file holds f16/bf16,
// memory-mapped, else converted once at load) and runs those products in bf16 with f32
// accumulation; activations, norms and biases stay f32. auto picks bf16 where the CPU has native
// bf16 instructions (AVX512_BF16), else fp32.
enum class Precision { Auto, Fp32, Bf16 };
Precision parse_precision(const std::string& s);  // "auto", "fp32" or "bf16"
const char* precision_name(Precision p);
Precision resolve_precision(Precision p);  // Auto -> Fp32 or Bf16 on this CPU

struct BundleOptions {
  // A diffusers folder whose config.json files describe this model (what a single file does
  // not store, such as head counts), as diffusers' from_single_file(config=...).
  std::string config_dir;
  // Where the fetched registry data lives (CLIP's BPE merges for single files).
  std::string data_dir;
  // The models' compute precision (fp32 by default: exact).
  Precision precision = Precision::Fp32;
};

// A model assembled from separately made parts, without UNet weights: what a UNet is trained
// from scratch in (`diffuse train unet --vae --text-encoder`).
struct ModelParts {
  nlohmann::json unet_config;    // the UNet's config.json (its weights are not there)
  std::string vae;               // a diffusers AutoencoderKL folder
  std::string text_encoder;      // a transformers CLIPTextModel folder
  std::string tokenizer;         // a tokenizer folder; "": the published CLIP tokenizer
  std::string scheduler_config;  // a scheduler_config.json; "": SD's published scheduler
};

class ModelBundle {
 public:
  static std::unique_ptr<ModelBundle> open(const std::string& path, const BundleOptions& opt = {});
  // The parts' files, resolved as open() resolves a diffusers folder's (`files.unet` empty).
  static std::unique_ptr<ModelBundle> from_parts(const ModelParts& parts,
                                                 const BundleOptions& opt = {});

  // The model's family (pipeline/family.h): what its parts are and how they combine.
  const FamilyInfo& family() const { return *family_; }
  // "SD1", "SDXL", "SD1-inpaint", ...
  std::string family_name() const { return family_display_name(*family_, inpaint); }
  bool inpaint = false;  // UNet takes latents + mask + masked-image latents
  io::ModelFiles files;
  models::ClipTextConfig text_config;
  models::ClipTextConfig text_config_2;  // SDXL's second text encoder (family().text_encoder_2)
  models::UNetConfig unet_config;
  models::VaeConfig vae_config;
  // What the UNet predicts: "epsilon" or "v_prediction" (scheduler config, else the family's
  // published default: SD1 epsilon, SD2 v_prediction).
  std::string prediction_type = "epsilon";
  nlohmann::json scheduler_config;

  // Tokenizers and text encoders, built on first use.
  const tokenizer::ClipTokenizer& tokenizer();
  const tokenizer::ClipTokenizer& tokenizer_2();
  int64_t pad_token_id();
  const models::ClipTextModel& text_encoder();
  const models::ClipTextModel& text_encoder_2();
  const models::UNet2DConditionModel& unet();
  const models::AutoencoderKL& vae();

  // The resolved compute precision (Fp32 or Bf16).
  Precision precision() const { return precision_; }
  // Holds, while it lives, the calling thread's compute precision (ops::PrecisionScope) at the
  // models' own: a bf16 model runs its attention, and the products with weights stored in f32,
  // in bf16 only inside it. Every caller of the models enters one
  // (`auto scope = model.compute_scope();`).
  ops::PrecisionScope compute_scope() const;

  // Published default clip skip, counted as A1111 does (SD1: 1, SD2 and SDXL: 2).
  int64_t default_clip_skip() const { return family_->default_clip_skip; }
  // Throws a clear Error when clip skip K (A1111's count) does not fit this model's encoders.
  void check_clip_skip(int64_t k) const;
  // Default image side in pixels, as diffusers' pipelines: the UNet config's sample_size (latent
  // pixels; the folder's or the --config folder's) times the VAE's downsampling; without a
  // config (single files), the family's
  // published size (512, 768 for SD2 v-prediction, 1024 for SDXL).
  int64_t default_image_size() const;
  // An empty negative prompt conditions on zeros (diffusers' force_zeros_for_empty_prompt: the
  // folder's model_index.json, else the family's published choice).
  bool zeros_for_empty_negative() const;
  // Token ids [1, 77] (padded with the model's pad token) of the first / second tokenizer.
  Tensor token_ids(const std::string& prompt);
  Tensor token_ids_2(const std::string& prompt);
  // What the UNet is conditioned on for `prompt`: the context [1, 77, D] of the family's text
  // encoder(s) at `clip_skip` (A1111's count), and SDXL's pooled embedding [1, P]. Time ids are
  // left to the caller (they depend on the image, not the prompt).
  Conditioning encode(const std::string& prompt, int64_t clip_skip);
  // encode(prompt, clip_skip).context
  Tensor encode_prompt(const std::string& prompt, int64_t clip_skip);

  // LoRA files merged into the UNet and the text encoder (models/lora). After set_loras(l)
  // exactly the files of `l` are merged with their multipliers: the previous set is undone
  // first, an empty list restores the original weights, and nothing is re-read when `l` equals
  // the current set. On an error (a file that does not read or fit) the original weights are
  // restored and the error is thrown.
  void set_loras(const std::vector<models::LoraUse>& loras);
  const std::vector<models::LoraUse>& loras() const { return loras_; }

 private:
  static std::unique_ptr<ModelBundle> from_files(io::ModelFiles files, const BundleOptions& opt);

  BundleOptions options_;
  std::string tokenizer_dir_;  // from_parts' tokenizer folder
  Precision precision_ = Precision::Fp32;
  const FamilyInfo* family_ = &families().front();
  int64_t sample_size_ = 0;  // the UNet config's sample_size (its own or --config's); 0 = none
  std::unique_ptr<tokenizer::ClipTokenizer> tokenizer_, tokenizer_2_;
  std::unique_ptr<models::ClipTextModel> text_encoder_, text_encoder_2_;
  std::unique_ptr<models::UNet2DConditionModel> unet_;
  std::unique_ptr<models::AutoencoderKL> vae_;
  std::vector<models::LoraUse> loras_;
  std::unique_ptr<models::LoraMerger> lora_merger_;  // declared last: restores before the models go
};

}  // namespace diffuse::pipeline
