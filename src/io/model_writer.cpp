// save_model: diffusers folders and LDM single files, written beside the target and renamed
// into place.
#include "io/model_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "io/mmap_file.h"
#include "io/name_map_inverse.h"
#include "io/safetensors.h"

namespace diffuse::io {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- safetensors metadata ----

Metadata file_metadata(const SaveOptions& o) {
  Metadata m = o.metadata;
  m.emplace("format", "pt");
  return m;
}

// ---- files and the staging folder ----

void write_text(const fs::path& file, const std::string& text) {
  AtomicWriter w(file.string());
  w.write(text.data(), text.size());
  w.commit();
}

void write_json(const fs::path& file, const json& j) {
  write_text(file, j.dump(2) + "\n");
}

// A target path without trailing separators ("out/" -> "out").
fs::path target_path(const std::string& path) {
  DF_CHECK(!path.empty(), "save_model: empty output path");
  fs::path p = fs::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  DF_CHECK(!p.empty() && p.filename() != "." && p.filename() != "..", "save_model: ", path,
           " does not name a file or folder to write");
  return p;
}

fs::path parent_of(const fs::path& target) {
  const fs::path parent = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  DF_CHECK(fs::is_directory(parent), target.string(), ": cannot write: the folder ",
           parent.string(), " does not exist");
  return parent;
}

bool is_replaceable_folder(const fs::path& dir) {
  return fs::is_regular_file(dir / "model_index.json") || fs::is_empty(dir);
}

// Refuses to replace what save_model did not make: anything but a diffusers folder (or an empty
// one) for a folder, anything but a regular file for a file.
void check_replaceable(const fs::path& target, ModelLayout layout) {
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(target, ec);
  if (!fs::exists(st)) return;
  if (layout == ModelLayout::DiffusersFolder)
    DF_CHECK(fs::is_directory(st) && is_replaceable_folder(target), target.string(),
             ": exists and is not a diffusers model folder (no model_index.json); refusing to "
             "replace it");
  else
    DF_CHECK(fs::is_regular_file(st), target.string(),
             ": exists and is not a file; refusing to replace it with a single-file model");
}

// A hidden folder beside the target, removed unless installed.
class StagingFolder {
 public:
  explicit StagingFolder(const fs::path& target)
      : target_(target),
        dir_(parent_of(target) / str(".", target.filename().string(), ".tmp-", getpid())) {
    fs::remove_all(dir_);
    std::error_code ec;
    fs::create_directory(dir_, ec);
    DF_CHECK(!ec, target.string(), ": cannot write: ", ec.message());
  }
  ~StagingFolder() {
    std::error_code ec;
    fs::remove_all(dir_, ec);  // after install this holds the replaced folder, if any
  }
  StagingFolder(const StagingFolder&) = delete;
  StagingFolder& operator=(const StagingFolder&) = delete;

  const fs::path& dir() const { return dir_; }

  // Moves the folder to the target. An existing target is swapped with it in one step
  // (renameat2 RENAME_EXCHANGE) and then removed with the staging name.
  void install() {
    const std::string from = dir_.string(), to = target_.string();
    if (!fs::exists(fs::symlink_status(target_))) {
      DF_CHECK(::rename(from.c_str(), to.c_str()) == 0, to,
               ": cannot rename into place: ", std::strerror(errno));
      return;
    }
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_EXCHANGE) == 0) return;
    // File systems without the exchange: move the old folder aside, then the new one in.
    const fs::path old = dir_.string() + ".old";
    DF_CHECK(::rename(to.c_str(), old.c_str()) == 0, to,
             ": cannot move the existing folder aside: ", std::strerror(errno));
    if (::rename(from.c_str(), to.c_str()) != 0) {
      const int err = errno;
      ::rename(old.c_str(), to.c_str());
      DF_FAIL(to, ": cannot rename into place: ", std::strerror(err));
    }
    std::error_code ec;
    fs::remove_all(old, ec);
  }

 private:
  fs::path target_, dir_;
};

// ---- diffusers folders ----

json default_model_index(const ModelFiles& m) {
  // SDXL: the base has both text encoders; the refiner (an img2img pipeline) only the second.
  const char* pipeline = m.text_encoder_2.empty() ? "StableDiffusionPipeline"
                         : m.text_encoder.empty() ? "StableDiffusionXLImg2ImgPipeline"
                                                  : "StableDiffusionXLPipeline";
  return {{"_class_name", pipeline},
          {"_diffusers_version", "0.30.0"},
          {"feature_extractor", {nullptr, nullptr}},
          {"safety_checker", {nullptr, nullptr}},
          {"requires_safety_checker", false}};
}

// One tokenizer folder's contents and the text encoder it feeds.
struct TokenizerFiles {
  const std::string &vocab, &merges, &pad_token;
  const json& text_config;
  const TensorMap& text_encoder;
  bool present() const { return !vocab.empty() || !merges.empty() || !pad_token.empty(); }
};

// The text encoder's positions (77 for every published model).
int64_t model_max_length_of(const TokenizerFiles& t) {
  const json& c = t.text_config;
  if (c.is_object() && c.contains("max_position_embeddings") &&
      c["max_position_embeddings"].is_number_integer())
    return c["max_position_embeddings"].get<int64_t>();
  auto it = t.text_encoder.find("text_model.embeddings.position_embedding.weight");
  return it != t.text_encoder.end() ? it->second.size(0) : 77;
}

void write_tokenizer(const TokenizerFiles& t, const fs::path& dir) {
  fs::create_directory(dir);
  if (!t.vocab.empty()) write_text(dir / "vocab.json", t.vocab);
  if (!t.merges.empty()) write_text(dir / "merges.txt", t.merges);
  json special = {{"bos_token", "<|startoftext|>"},
                  {"eos_token", "<|endoftext|>"},
                  {"unk_token", "<|endoftext|>"}};
  if (!t.pad_token.empty()) special["pad_token"] = t.pad_token;
  write_json(dir / "special_tokens_map.json", special);
  json config = special;
  config["tokenizer_class"] = "CLIPTokenizer";
  config["do_lower_case"] = true;
  config["model_max_length"] = model_max_length_of(t);
  write_json(dir / "tokenizer_config.json", config);
}

// transformers records the weights' dtype in config.json (torch_dtype, newer: dtype).
json with_dtype(const json& config, const std::optional<DType>& dtype) {
  if (!dtype) return config;
  json out = config;
  const char* torch_name = *dtype == DType::F16    ? "float16"
                           : *dtype == DType::BF16 ? "bfloat16"
                                                   : "float32";
  for (const char* key : {"torch_dtype", "dtype"})
    if (out.contains(key) && out[key].is_string()) out[key] = torch_name;
  return out;
}

void save_diffusers_folder(const ModelFiles& m, const fs::path& target, const SaveOptions& o) {
  struct Part {
    const char* name;
    const TensorMap& tensors;
    const json& config;
    const char* weights_file;
    const char* library;
    const char* class_name;
  };
  const Part parts[] = {{"unet", m.unet, m.unet_config, "diffusion_pytorch_model.safetensors",
                         "diffusers", "UNet2DConditionModel"},
                        {"vae", m.vae, m.vae_config, "diffusion_pytorch_model.safetensors",
                         "diffusers", "AutoencoderKL"},
                        {"text_encoder", m.text_encoder, m.text_encoder_config, "model.safetensors",
                         "transformers", "CLIPTextModel"},
                        {"text_encoder_2", m.text_encoder_2, m.text_encoder_2_config,
                         "model.safetensors", "transformers", "CLIPTextModelWithProjection"}};
  DF_CHECK(!m.unet.empty(), target.string(), ": a diffusers folder needs a UNet: none given");
  for (const Part& p : parts)
    DF_CHECK(p.tensors.empty() || p.config.is_object(), target.string(), ": the ", p.name,
             " has no config (ModelFiles::", p.name, "_config); a diffusers folder needs one");

  json index = m.model_index.is_object() ? m.model_index : default_model_index(m);
  // SDXL's second text encoder and tokenizer are listed as absent only where the index names them.
  auto list = [&](const char* component, bool present, const char* library, const char* cls) {
    const bool listed = index.contains(component) && index[component].is_array() &&
                        index[component].size() == 2 && index[component][0].is_string();
    const bool sdxl_only = std::string_view(component).ends_with("_2");
    if (!present) {
      if (!sdxl_only || index.contains(component)) index[component] = {nullptr, nullptr};
    } else if (!listed) {
      index[component] = {library, cls};
    }
  };

  StagingFolder staging(target);
  const Metadata meta = file_metadata(o);
  for (const Part& p : parts) {
    list(p.name, !p.tensors.empty(), p.library, p.class_name);
    if (p.tensors.empty()) continue;
    const fs::path dir = staging.dir() / p.name;
    fs::create_directory(dir);
    write_json(dir / "config.json", with_dtype(p.config, o.dtype));
    save_safetensors((dir / p.weights_file).string(), p.tensors, meta, o.dtype);
  }
  const bool scheduler = m.scheduler_config.is_object();
  std::string scheduler_class = "PNDMScheduler";
  if (scheduler && m.scheduler_config.contains("_class_name") &&
      m.scheduler_config["_class_name"].is_string())
    scheduler_class = m.scheduler_config["_class_name"].get<std::string>();
  list("scheduler", scheduler, "diffusers", scheduler_class.c_str());
  if (scheduler) {
    fs::create_directory(staging.dir() / "scheduler");
    write_json(staging.dir() / "scheduler" / "scheduler_config.json", m.scheduler_config);
  }
  const TokenizerFiles tokenizers[] = {
      {m.tokenizer_vocab, m.tokenizer_merges, m.tokenizer_pad_token, m.text_encoder_config,
       m.text_encoder},
      {m.tokenizer_2_vocab, m.tokenizer_2_merges, m.tokenizer_2_pad_token, m.text_encoder_2_config,
       m.text_encoder_2}};
  for (int i = 0; i < 2; ++i) {
    const char* name = i == 0 ? "tokenizer" : "tokenizer_2";
    list(name, tokenizers[i].present(), "transformers", "CLIPTokenizer");
    if (tokenizers[i].present()) write_tokenizer(tokenizers[i], staging.dir() / name);
  }
  // Components of the source index that are not written (safety checker, feature extractor...)
  // are listed as absent, so that a loader does not look for their folders.
  for (auto& [name, entry] : index.items())
    if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
        !fs::is_directory(staging.dir() / name))
      entry = {nullptr, nullptr};
  write_json(staging.dir() / "model_index.json", index);
  staging.install();
}

}  // namespace

TextEncoderLayout single_file_text_layout(const ModelFiles& m) {
  if (m.text_layout != TextEncoderLayout::None) return m.text_layout;
  if (!m.text_encoder_2.empty()) return TextEncoderLayout::Conditioner;
  const json& c = m.text_encoder_config;
  const bool gelu = c.is_object() && c.contains("hidden_act") && c["hidden_act"] == "gelu";
  return gelu ? TextEncoderLayout::OpenClip : TextEncoderLayout::ClipHF;
}

TensorMap single_file_tensors(const ModelFiles& m, TextEncoderLayout text_layout) {
  const LdmLayoutPlan plan = plan_ldm_layout(names_and_shapes(m.unet), names_and_shapes(m.vae),
                                             names_and_shapes(m.text_encoder), text_layout,
                                             names_and_shapes(m.text_encoder_2));
  // The mappings of each source name, in part order.
  std::map<std::string, std::vector<const TensorMapping*>> by_source;
  for (const TensorMapping& t : plan.tensors) by_source[t.source].push_back(&t);
  for (auto& [source, maps] : by_source)
    std::sort(maps.begin(), maps.end(), [](auto* a, auto* b) { return a->part < b->part; });
  const std::map<std::string, Shape> shapes(plan.sources.begin(), plan.sources.end());
  TensorMap out;
  for (const auto& [source, maps] : by_source) {
    std::vector<Tensor> parts;
    for (const TensorMapping* t : maps)
      parts.push_back(component_tensors(m, t->component).at(t->target));
    out.emplace(source, unapply_mappings(maps, parts, shapes.at(source)));
  }
  // The padding is shaped and typed like the tensors it stands beside.
  const DType pad_dtype =
      m.text_encoder.empty() ? DType::F32 : m.text_encoder.begin()->second.dtype();
  for (const auto& [name, shape] : plan.padding) out.emplace(name, Tensor::zeros(shape, pad_dtype));
  return out;
}

void save_model(const ModelFiles& m, const std::string& path, ModelLayout layout,
                const SaveOptions& o) {
  const fs::path target = target_path(path);
  parent_of(target);
  check_replaceable(target, layout);
  if (o.dtype)
    DF_CHECK(is_floating(*o.dtype), "save_model: cannot convert weights to ", dtype_name(*o.dtype),
             " (f32, f16 or bf16 expected)");
  if (layout == ModelLayout::DiffusersFolder) {
    save_diffusers_folder(m, target, o);
    return;
  }
  const TextEncoderLayout text =
      o.text_layout != TextEncoderLayout::None ? o.text_layout : single_file_text_layout(m);
  // save_safetensors writes a temporary file beside the target and renames it into place.
  save_safetensors(target.string(), single_file_tensors(m, text), file_metadata(o), o.dtype);
}

DType parse_save_dtype(const std::string& s) {
  if (s == "f16" || s == "fp16" || s == "float16") return DType::F16;
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  if (s == "f32" || s == "fp32" || s == "float32") return DType::F32;
  DF_FAIL("unknown dtype '", s, "' (expected f16, bf16 or f32)");
}

}  // namespace diffuse::io
