#include "pipeline/model_bundle.h"

#include <cstdlib>
#include <filesystem>

#include "core/json_file.h"
#include "io/mmap_file.h"
#include "ops/ops.h"
#include "sampling/schedule.h"

namespace diffuse::pipeline {

namespace fs = std::filesystem;

const char* family_name(Family f, bool inpaint) {
  if (f == Family::SD2) return inpaint ? "SD2-inpaint" : "SD2";
  return inpaint ? "SD1-inpaint" : "SD1";
}

namespace {

nlohmann::json read_json(const std::string& path) { return read_json_file(path); }

// The UNet's first convolution tells how many channels it takes (4, or 9 when inpainting).
int64_t unet_in_channels(const io::ModelFiles& f) {
  auto it = f.unet.find("conv_in.weight");
  DF_CHECK(it != f.unet.end(), f.path, ": the UNet has no conv_in.weight");
  return it->second.size(1);
}

// Loads `m` strictly from `w`. bf16: matrices (dim >= 2: linear, convolution and embedding
// weights) keep their stored dtype, memory-mapped where the file is, without a copy: f16/bf16
// ones run bf16 products, f32 ones do inside the bundle's compute_scope(); either is packed to
// bf16 at its first use, after which a mapped file's pages are handed back. Converting f32
// matrices here instead would keep a second, 16-bit copy of them beside the packed one for the
// process's life. Vectors (biases, norm weights) are f32.
void load_module(nn::Module& m, const io::TensorMap& w, const std::string& what, Precision p) {
  if (p != Precision::Bf16) {
    m.load_state_dict(w, what);
    for (auto& [name, t] : w)  // the converted sources are not read again
      if (t.dtype() != DType::F32) ops::release_pages(t);
    return;
  }
  io::TensorMap lw;
  for (auto& [name, t] : w) lw.emplace(name, t.dim() >= 2 ? t : t.to(DType::F32));
  m.load_state_dict(lw, what, std::nullopt);
  for (auto& [name, t] : w)
    if (t.dim() < 2 && t.dtype() != DType::F32) ops::release_pages(t);
}

}  // namespace

Precision parse_precision(const std::string& s) {
  if (s == "auto") return Precision::Auto;
  if (s == "fp32" || s == "f32") return Precision::Fp32;
  if (s == "bf16") return Precision::Bf16;
  DF_FAIL("unknown precision '", s, "' (expected auto, fp32 or bf16)");
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::Auto: return "auto";
    case Precision::Fp32: return "fp32";
    case Precision::Bf16: return "bf16";
  }
  return "?";
}

ops::PrecisionScope ModelBundle::compute_scope() const {
  return ops::PrecisionScope(precision_ == Precision::Bf16 ? ops::ComputePrecision::BF16
                                                           : ops::ComputePrecision::F32);
}

Precision resolve_precision(Precision p) {
  if (p != Precision::Auto) return p;
  return ops::cpu_has_native_bf16() ? Precision::Bf16 : Precision::Fp32;
}

std::unique_ptr<ModelBundle> ModelBundle::open(const std::string& path, const BundleOptions& opt) {
  // A bf16 model rounds its weights to bf16 anyway: quantized ones are dequantized straight to it.
  const bool bf16 = resolve_precision(opt.precision) == Precision::Bf16;
  return from_files(io::open_model(path, bf16 ? DType::BF16 : DType::F32), opt);
}

std::unique_ptr<ModelBundle> ModelBundle::from_parts(const ModelParts& parts,
                                                     const BundleOptions& opt) {
  DF_CHECK(parts.unet_config.is_object(), "a model from parts needs the UNet's config");
  io::ModelFiles f;
  f.path = "parts (VAE " + parts.vae + ", text encoder " + parts.text_encoder + ")";
  f.layout = io::ModelLayout::DiffusersFolder;
  f.unet_config = parts.unet_config;
  io::read_component_folder(parts.vae, "vae", f);
  io::read_component_folder(parts.text_encoder, "text_encoder", f);
  if (!parts.tokenizer.empty()) {
    DF_CHECK(fs::is_directory(parts.tokenizer), "tokenizer folder ", parts.tokenizer,
             " does not exist");
    io::read_tokenizer_folder(parts.tokenizer, f);
  }
  if (!parts.scheduler_config.empty()) f.scheduler_config = read_json(parts.scheduler_config);
  auto b = from_files(std::move(f), opt);
  b->tokenizer_dir_ = parts.tokenizer;
  return b;
}

std::unique_ptr<ModelBundle> ModelBundle::from_files(io::ModelFiles files,
                                                     const BundleOptions& opt) {
  auto b = std::make_unique<ModelBundle>();
  b->options_ = opt;
  b->precision_ = resolve_precision(opt.precision);
  b->files = std::move(files);
  const io::ModelFiles& f = b->files;
  b->inpaint = !f.unet.empty() && unet_in_channels(f) == 9;

  // Text encoder config: the folder's own, a given config folder's, or the tensor shapes.
  nlohmann::json text_json = f.text_encoder_config;
  if (text_json.is_null() && !opt.config_dir.empty()) {
    std::string p = (fs::path(opt.config_dir) / "text_encoder" / "config.json").string();
    text_json = read_json(p);
  }
  if (!text_json.is_null()) {
    b->text_config = models::ClipTextConfig::from_json(text_json);
  } else {
    const bool openclip = f.text_layout == io::TextEncoderLayout::OpenClip;
    b->text_config = models::ClipTextConfig::infer(f.text_encoder, openclip ? "gelu" : "quick_gelu");
  }
  // SD2's text encoder is OpenCLIP's (gelu); SD1's is OpenAI's CLIP (quick_gelu).
  b->family = b->text_config.hidden_act == "gelu" ? Family::SD2 : Family::SD1;
  if (b->family == Family::SD2) b->text_config.unused_published_layers = 1;

  // UNet and VAE: the folder's configs, a config folder's, or the tensor shapes. Channel
  // counts always come from the shapes (an inpaint file may borrow its base model's config).
  nlohmann::json unet_json = f.unet_config, vae_json = f.vae_config, sched = f.scheduler_config;
  if (!opt.config_dir.empty()) {
    fs::path d(opt.config_dir);
    if (unet_json.is_null()) unet_json = read_json((d / "unet" / "config.json").string());
    if (vae_json.is_null()) vae_json = read_json((d / "vae" / "config.json").string());
    if (sched.is_null() && fs::exists(d / "scheduler" / "scheduler_config.json"))
      sched = read_json((d / "scheduler" / "scheduler_config.json").string());
  }
  if (unet_json.is_null()) {
    b->unet_config = models::UNetConfig::infer(f.unet);
  } else {
    b->unet_config = models::UNetConfig::from_json(unet_json);
    if (!f.unet.empty()) {
      models::UNetConfig shapes = models::UNetConfig::infer_channels(f.unet);
      b->unet_config.in_channels = shapes.in_channels;
      b->unet_config.out_channels = shapes.out_channels;
    }
  }
  b->vae_config = vae_json.is_null() ? models::VaeConfig::infer(f.vae) : models::VaeConfig::from_json(vae_json);
  if (sched.is_object()) sampling::parse_scheduler_config(sched.dump());  // checks its values
  b->scheduler_config = sched;
  b->prediction_type = b->family == Family::SD2 ? "v_prediction" : "epsilon";
  if (sched.is_object() && sched.contains("prediction_type") && sched["prediction_type"].is_string())
    b->prediction_type = sched["prediction_type"].get<std::string>();
  return b;
}

const tokenizer::ClipTokenizer& ModelBundle::tokenizer() {
  if (!tokenizer_) {
    std::unique_ptr<tokenizer::ClipTokenizer> t;
    const fs::path dir =
        !tokenizer_dir_.empty() ? fs::path(tokenizer_dir_) : fs::path(files.path) / "tokenizer";
    if (files.layout == io::ModelLayout::DiffusersFolder && fs::is_directory(dir)) {
      // The folder's vocabulary (or the published one) with its pad token and length.
      t = std::make_unique<tokenizer::ClipTokenizer>(
          tokenizer::ClipTokenizer::from_pretrained_dir(dir.string(), options_.data_dir));
    } else {
      // Published tokenizers: SD1 pads with the end token, SD2 (OpenCLIP) with "!", which
      // then also counts as a special token in prompts.
      t = std::make_unique<tokenizer::ClipTokenizer>(
          tokenizer::ClipTokenizer::load_default(options_.data_dir));
      t->set_pad_token(family == Family::SD2 ? "!" : "<|endoftext|>",
                       int(text_config.max_position_embeddings));
    }
    tokenizer_ = std::move(t);
  }
  return *tokenizer_;
}

int64_t ModelBundle::pad_token_id() { return tokenizer().pad_id(); }

const models::ClipTextModel& ModelBundle::text_encoder() {
  if (!text_encoder_) {
    auto m = std::make_unique<models::ClipTextModel>(text_config);
    load_module(*m, files.text_encoder, "text encoder of " + files.path, precision_);
    text_encoder_ = std::move(m);
  }
  return *text_encoder_;
}

const models::UNet2DConditionModel& ModelBundle::unet() {
  if (!unet_) {
    auto m = std::make_unique<models::UNet2DConditionModel>(unet_config);
    load_module(*m, files.unet, "UNet of " + files.path, precision_);
    unet_ = std::move(m);
  }
  return *unet_;
}

const models::AutoencoderKL& ModelBundle::vae() {
  if (!vae_) {
    auto m = std::make_unique<models::AutoencoderKL>(vae_config);
    load_module(*m, files.vae, "VAE of " + files.path, precision_);
    vae_ = std::move(m);
  }
  return *vae_;
}

Tensor ModelBundle::token_ids(const std::string& prompt) {
  auto ids = tokenizer().encode_padded(prompt, pad_token_id(), int(text_config.max_position_embeddings));
  return Tensor::from_i64(ids, {1, int64_t(ids.size())});
}

Tensor ModelBundle::encode_prompt(const std::string& prompt, int64_t clip_skip) {
  const auto scope = compute_scope();
  return text_encoder().encode(token_ids(prompt), clip_skip);
}

void ModelBundle::set_loras(const std::vector<models::LoraUse>& loras) {
  if (loras == loras_) return;
  lora_merger_.reset();  // restores the original weights
  loras_.clear();
  if (loras.empty()) return;
  auto merger = std::make_unique<models::LoraMerger>(&unet(), &text_encoder());
  for (auto& l : loras)
    merger->merge(models::read_lora_file(l.path), l.path, l.unet_weight, l.text_encoder_weight);
  lora_merger_ = std::move(merger);
  loras_ = loras;
}

int64_t ModelBundle::default_image_size() const {
  const nlohmann::json& c = files.unet_config;
  if (c.is_object() && c.contains("sample_size") && c["sample_size"].is_number_integer() &&
      c["sample_size"].get<int64_t>() > 0)
    return c["sample_size"].get<int64_t>() << (vae_config.block_out_channels.size() - 1);
  return family == Family::SD2 && prediction_type == "v_prediction" ? 768 : 512;
}

}  // namespace diffuse::pipeline
