#include "pipeline/model_bundle.h"

#include <cstdlib>
#include <filesystem>

#include "core/json_file.h"
#include "io/mmap_file.h"
#include "ops/ops.h"
#include "sampling/schedule.h"

namespace diffuse::pipeline {

namespace fs = std::filesystem;

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

  // Text encoder configs: the folder's own, a given config folder's, or the tensor shapes.
  auto text_json = [&](const nlohmann::json& own, const char* component) {
    if (!own.is_null() || opt.config_dir.empty()) return own;
    const fs::path p = fs::path(opt.config_dir) / component / "config.json";
    return fs::exists(p) ? read_json(p.string()) : nlohmann::json();
  };
  const nlohmann::json te_json = text_json(f.text_encoder_config, "text_encoder");
  if (!te_json.is_null()) {
    b->text_config = models::ClipTextConfig::from_json(te_json);
  } else if (!f.text_encoder.empty()) {
    const bool openclip = f.text_layout == io::TextEncoderLayout::OpenClip;
    b->text_config = models::ClipTextConfig::infer(f.text_encoder, openclip ? "gelu" : "quick_gelu");
  }
  b->family_ = &detect_family(f, te_json.is_null() && f.text_encoder.empty() ? std::string()
                                                                                 : b->text_config.hidden_act);
  b->text_config.unused_published_layers = b->family_->unused_text_layers;
  if (b->family_->text_encoder_2) {
    const nlohmann::json te2_json = text_json(f.text_encoder_2_config, "text_encoder_2");
    b->text_config_2 = !te2_json.is_null() ? models::ClipTextConfig::from_json(te2_json)
                                           : models::ClipTextConfig::infer(f.text_encoder_2, "gelu");
  }

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
  if (unet_json.is_object() && unet_json.contains("sample_size") &&
      unet_json["sample_size"].is_number_integer() && unet_json["sample_size"].get<int64_t>() > 0)
    b->sample_size_ = unet_json["sample_size"].get<int64_t>();
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
  b->prediction_type = std::string(b->family_->prediction_type);
  if (sched.is_object() && sched.contains("prediction_type") && sched["prediction_type"].is_string())
    b->prediction_type = sched["prediction_type"].get<std::string>();
  return b;
}

namespace {

// A diffusers folder's tokenizer folder (its vocabulary, or the published one, with its pad
// token and length); else the published CLIP tokenizer padded with the family's pad token
// ("!" then also counts as a special token in prompts, as in OpenCLIP's tokenizers).
std::unique_ptr<tokenizer::ClipTokenizer> open_tokenizer(const fs::path& dir, bool folder,
                                                         std::string_view pad_token,
                                                         int64_t length, const std::string& data) {
  if (folder && fs::is_directory(dir))
    return std::make_unique<tokenizer::ClipTokenizer>(
        tokenizer::ClipTokenizer::from_pretrained_dir(dir.string(), data));
  auto t = std::make_unique<tokenizer::ClipTokenizer>(tokenizer::ClipTokenizer::load_default(data));
  t->set_pad_token(std::string(pad_token), int(length));
  return t;
}

}  // namespace

const tokenizer::ClipTokenizer& ModelBundle::tokenizer() {
  if (!tokenizer_) {
    const fs::path dir =
        !tokenizer_dir_.empty() ? fs::path(tokenizer_dir_) : fs::path(files.path) / "tokenizer";
    tokenizer_ = open_tokenizer(dir, files.layout == io::ModelLayout::DiffusersFolder,
                                family_->pad_token, text_config.max_position_embeddings,
                                options_.data_dir);
  }
  return *tokenizer_;
}

const tokenizer::ClipTokenizer& ModelBundle::tokenizer_2() {
  if (!tokenizer_2_)
    tokenizer_2_ = open_tokenizer(fs::path(files.path) / "tokenizer_2",
                                  files.layout == io::ModelLayout::DiffusersFolder,
                                  family_->pad_token_2, text_config_2.max_position_embeddings,
                                  options_.data_dir);
  return *tokenizer_2_;
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

const models::ClipTextModel& ModelBundle::text_encoder_2() {
  if (!text_encoder_2_) {
    DF_CHECK(family_->text_encoder_2 && !files.text_encoder_2.empty(), files.path,
             ": this model has no second text encoder");
    auto m = std::make_unique<models::ClipTextModel>(text_config_2);
    load_module(*m, files.text_encoder_2, "second text encoder of " + files.path, precision_);
    text_encoder_2_ = std::move(m);
  }
  return *text_encoder_2_;
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

Tensor ModelBundle::token_ids_2(const std::string& prompt) {
  const tokenizer::ClipTokenizer& t = tokenizer_2();
  auto ids = t.encode_padded(prompt, t.pad_id(), int(text_config_2.max_position_embeddings));
  return Tensor::from_i64(ids, {1, int64_t(ids.size())});
}

Conditioning ModelBundle::encode(const std::string& prompt, int64_t clip_skip) {
  const auto scope = compute_scope();
  const FamilyInfo& fam = *family_;
  Conditioning c;
  std::vector<Tensor> contexts;
  if (fam.text_encoder)
    contexts.push_back(text_encoder().encode(token_ids(prompt), clip_skip, fam.context_final_norm));
  if (fam.text_encoder_2) {
    // One run gives both the hidden state at clip_skip and the pooled projection.
    const models::ClipTextOutput out = text_encoder_2().forward(token_ids_2(prompt));
    const int64_t n = int64_t(out.hidden_states.size()) - 1;  // blocks
    DF_CHECK(clip_skip >= 1 && clip_skip <= n, "clip skip ", clip_skip,
             " is beyond the second text encoder's ", n, " blocks");
    const Tensor& h = out.hidden_states[size_t(n + 1 - clip_skip)];
    contexts.push_back(fam.context_final_norm ? text_encoder_2().text_model.final_layer_norm.forward(h)
                                              : h);
    c.pooled = out.text_embeds;
  }
  // b l d1, b l d2 -> b l (d1 + d2)
  c.context = contexts.size() == 1 ? contexts[0] : ops::cat(contexts, 2);
  return c;
}

Tensor ModelBundle::encode_prompt(const std::string& prompt, int64_t clip_skip) {
  return encode(prompt, clip_skip).context;
}

void ModelBundle::check_clip_skip(int64_t k) const {
  auto check = [k](const models::ClipTextConfig& tc, const char* what) {
    const int64_t lowest = tc.unused_published_layers + 1, highest = tc.published_layers();
    DF_CHECK(k >= lowest && k <= highest, "clip skip ", k, " is out of range for ", what,
             ": from ", lowest, " to ", highest);
  };
  if (family_->text_encoder) check(text_config, "this model's text encoder");
  if (family_->text_encoder_2) check(text_config_2, "this model's second text encoder");
}

bool ModelBundle::zeros_for_empty_negative() const {
  const nlohmann::json& mi = files.model_index;
  if (mi.is_object() && mi.contains("force_zeros_for_empty_prompt") &&
      mi["force_zeros_for_empty_prompt"].is_boolean())
    return mi["force_zeros_for_empty_prompt"].get<bool>();
  return family_->zeros_for_empty_negative;
}

void ModelBundle::set_loras(const std::vector<models::LoraUse>& loras) {
  if (loras == loras_) return;
  lora_merger_.reset();  // restores the original weights
  loras_.clear();
  if (loras.empty()) return;
  auto merger = std::make_unique<models::LoraMerger>(
      &unet(), family_->text_encoder ? &text_encoder() : nullptr,
      family_->text_encoder_2 ? &text_encoder_2() : nullptr);
  for (auto& l : loras)
    merger->merge(models::read_lora_file(l.path), l.path, l.unet_weight, l.text_encoder_weight);
  lora_merger_ = std::move(merger);
  loras_ = loras;
}

int64_t ModelBundle::default_image_size() const {
  if (sample_size_ > 0) return sample_size_ << (vae_config.block_out_channels.size() - 1);
  return family_->default_side(prediction_type);
}

}  // namespace diffuse::pipeline
