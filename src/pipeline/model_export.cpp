#include "pipeline/model_export.h"

#include <algorithm>
#include <filesystem>

#include "core/json_file.h"
#include "io/mmap_file.h"

namespace diffuse::pipeline {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json read_json_if_present(const fs::path& file) {
  return fs::is_regular_file(file) ? read_json_file(file.string()) : json();
}

// config_dir's config of a component with the bundle's resolved fields written over it.
json resolved_config(const json& resolved, const std::string& config_dir, const char* component) {
  json j = config_dir.empty()
               ? json()
               : read_json_if_present(fs::path(config_dir) / component / "config.json");
  if (!j.is_object()) j = json::object();
  j.update(resolved);
  return j;
}

// Stable Diffusion's published scheduler (scaled_linear betas, leading spacing) of the family's
// class (PNDM for SD1/SD2, Euler for SDXL).
json published_scheduler(const FamilyInfo& family, const std::string& prediction_type) {
  return {{"_class_name", std::string(family.scheduler)},
          {"beta_start", 0.00085},
          {"beta_end", 0.012},
          {"beta_schedule", "scaled_linear"},
          {"clip_sample", false},
          {"num_train_timesteps", 1000},
          {"prediction_type", prediction_type},
          {"set_alpha_to_one", false},
          {"skip_prk_steps", true},
          {"steps_offset", 1},
          {"timestep_spacing", "leading"},
          {"trained_betas", nullptr}};
}

}  // namespace

io::ModelFiles files_for_export(ModelBundle& b, const std::string& config_dir) {
  io::ModelFiles f = b.files;
  const bool unknown_unet_heads = std::find(b.unet_config.heads.begin(), b.unet_config.heads.end(),
                                            0) != b.unet_config.heads.end();
  if (!f.unet.empty() && f.unet_config.is_null()) {
    DF_CHECK(!unknown_unet_heads, f.path,
             ": the UNet's attention head counts are not stored in the file; give --config with "
             "a diffusers folder of the same model");
    f.unet_config = resolved_config(b.unet_config.to_json(), config_dir, "unet");
    // diffusers' pipelines take their default image size from sample_size (latent pixels)
    if (!f.unet_config.contains("sample_size"))
      f.unet_config["sample_size"] =
          b.family().default_side(b.prediction_type) >> (b.vae_config.block_out_channels.size() - 1);
  }
  if (!f.vae.empty() && f.vae_config.is_null())
    f.vae_config = resolved_config(b.vae_config.to_json(), config_dir, "vae");
  if (!f.text_encoder.empty() && f.text_encoder_config.is_null()) {
    DF_CHECK(b.text_config.num_attention_heads > 0, f.path,
             ": the text encoder's head count is not stored in the file; give --config with a "
             "diffusers folder of the same model");
    f.text_encoder_config = resolved_config(b.text_config.to_json(), config_dir, "text_encoder");
  }
  if (f.scheduler_config.is_null())
    f.scheduler_config = b.scheduler_config.is_object() ? b.scheduler_config
                                                        : published_scheduler(b.family(), b.prediction_type);
  if (!f.text_encoder_2.empty() && f.text_encoder_2_config.is_null()) {
    DF_CHECK(b.text_config_2.num_attention_heads > 0, f.path,
             ": the second text encoder's head count is not stored in the file; give --config "
             "with a diffusers folder of the same model");
    f.text_encoder_2_config = resolved_config(b.text_config_2.to_json(), config_dir, "text_encoder_2");
  }
  if (!f.text_encoder_2.empty() && f.tokenizer_2_vocab.empty() && f.tokenizer_2_merges.empty()) {
    if (!config_dir.empty())
      io::read_tokenizer_folder((fs::path(config_dir) / "tokenizer_2").string(), f, "tokenizer_2");
    if (f.tokenizer_2_pad_token.empty()) f.tokenizer_2_pad_token = std::string(b.family().pad_token_2);
    if (f.tokenizer_2_vocab.empty() && f.tokenizer_2_merges.empty()) {
      const tokenizer::ClipTokenizer& t = b.tokenizer_2();
      f.tokenizer_2_vocab = t.vocab_json();
      f.tokenizer_2_merges = t.merges_txt();
    }
  }
  if (f.tokenizer_vocab.empty() && f.tokenizer_merges.empty() && f.tokenizer_pad_token.empty()) {
    if (!config_dir.empty())
      io::read_tokenizer_folder((fs::path(config_dir) / "tokenizer").string(), f);
    // as ModelBundle::tokenizer() pads a model without a tokenizer of its own
    if (f.tokenizer_pad_token.empty() && !f.text_encoder.empty())
      f.tokenizer_pad_token = std::string(b.family().pad_token);
  }
  // A folder that other tools load whole (diffusers, transformers) needs the vocabulary itself:
  // the one the bundle reads (the published CLIP BPE, fetched at set-up, for a single file).
  if (!f.text_encoder.empty() && f.tokenizer_vocab.empty() && f.tokenizer_merges.empty()) {
    const tokenizer::ClipTokenizer& t = b.tokenizer();
    f.tokenizer_vocab = t.vocab_json();
    f.tokenizer_merges = t.merges_txt();
  }
  return f;
}

}  // namespace diffuse::pipeline
