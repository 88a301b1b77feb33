// open_model: a diffusers folder (model_index.json + one folder per component) or a single
// file in the original LDM layout, both brought to the canonical names.
#include "io/model_files.h"

#include <filesystem>

#include "core/json_file.h"
#include "io/folder_path.h"
#include "io/mmap_file.h"
#include "io/name_map_ldm.h"
#include "io/weights.h"

namespace diffuse::io {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json read_json(const fs::path& file) { return diffuse::read_json_file(file.string()); }

json read_json_if_present(const fs::path& file) {
  return fs::is_regular_file(file) ? read_json(file) : json();
}

std::string read_text_if_present(const fs::path& file) {
  return fs::is_regular_file(file) ? read_text_file(file.string()) : std::string();
}

// ---- diffusers folders ----

// A sharded checkpoint: an index whose weight_map names the file of every tensor.
TensorMap load_sharded(const fs::path& index_file) {
  const json index = read_json(index_file);
  DF_CHECK(index.contains("weight_map") && index["weight_map"].is_object(), index_file.string(),
           ": no weight_map object");
  std::map<std::string, std::vector<std::string>> by_file;
  for (const auto& [name, file] : index["weight_map"].items()) {
    DF_CHECK(file.is_string(), index_file.string(), ": weight_map entry ", name,
             " is not a string");
    by_file[file.get<std::string>()].push_back(name);
  }
  TensorMap out;
  for (const auto& [file, names] : by_file) {
    const fs::path shard = file_in_folder(index_file.parent_path(), file, index_file.string());
    TensorMap part = load_weights(shard.string());
    for (const std::string& name : names) {
      auto it = part.find(name);
      DF_CHECK(it != part.end(), index_file.string(), ": tensor ", name, " is not in ",
               shard.string());
      out[name] = it->second;
    }
  }
  return out;
}

// The weights of one component folder: safetensors first, full precision before the fp16
// variant, then sharded indexes, then PyTorch .bin files.
TensorMap load_component_weights(const fs::path& dir) {
  static const char* kBases[] = {"diffusion_pytorch_model", "model"};
  std::vector<fs::path> tried;
  for (const char* variant : {"", ".fp16"}) {
    for (const char* base : kBases) {
      const fs::path file = dir / str(base, variant, ".safetensors");
      tried.push_back(file);
      if (fs::is_regular_file(file)) return load_weights(file.string());
    }
    for (const char* base : kBases) {
      const fs::path index = dir / str(base, ".safetensors.index", variant, ".json");
      tried.push_back(index);
      if (fs::is_regular_file(index)) return load_sharded(index);
    }
  }
  for (const char* variant : {"", ".fp16"})
    for (const char* base : kBases) {
      const fs::path file = dir / str(base, variant, ".bin");
      tried.push_back(file);
      if (fs::is_regular_file(file)) return load_weights(file.string());
    }
  std::string names;
  for (const fs::path& t : tried) names += (names.empty() ? "" : ", ") + t.filename().string();
  DF_FAIL(dir.string(), ": no weights file (looked for ", names, ")");
}

// tokenizer pad token: a string, or an AddedToken object {"content": ...}.
std::string pad_token_of(const json& config) {
  if (!config.is_object() || !config.contains("pad_token")) return "";
  const json& pad = config["pad_token"];
  if (pad.is_string()) return pad.get<std::string>();
  if (pad.is_object() && pad.contains("content") && pad["content"].is_string())
    return pad["content"].get<std::string>();
  return "";
}

bool index_lists(const json& model_index, const char* component) {
  if (!model_index.is_object() || !model_index.contains(component)) return false;
  const json& entry = model_index[component];
  return entry.is_array() && !entry.empty() && !entry[0].is_null();
}

ModelFiles open_diffusers_folder(const fs::path& dir) {
  const fs::path index_file = dir / "model_index.json";
  DF_CHECK(fs::is_regular_file(index_file), dir.string(),
           ": a folder without model_index.json is not a diffusers model folder");
  ModelFiles m;
  m.path = dir.string();
  m.layout = ModelLayout::DiffusersFolder;
  m.model_index = read_json(index_file);
  DF_CHECK(m.model_index.is_object(), index_file.string(), ": not a JSON object");

  for (const char* part : {"unet", "vae", "text_encoder", "text_encoder_2"}) {
    const fs::path sub = dir / part;
    if (!fs::is_directory(sub)) {
      DF_CHECK(!index_lists(m.model_index, part) && std::string(part) != "unet", dir.string(),
               ": the ", part, " folder is missing");
      continue;
    }
    read_component_folder(sub.string(), part, m);
  }

  m.scheduler_config = read_json_if_present(dir / "scheduler" / "scheduler_config.json");
  read_tokenizer_folder((dir / "tokenizer").string(), m);
  read_tokenizer_folder((dir / "tokenizer_2").string(), m, "tokenizer_2");
  return m;
}

// ---- single files ----

ModelFiles open_single_file(const std::string& path, DType dequantized) {
  ModelFiles m;
  m.path = path;
  m.layout = ModelLayout::SingleFile;
  const TensorMap all = load_weights(path, dequantized);
  NamedShapes names;
  names.reserve(all.size());
  for (const auto& [name, t] : all) names.emplace_back(name, t.shape());
  const SingleFilePlan plan = plan_single_file(names, path);
  for (const TensorMapping& map : plan.tensors)
    component_tensors(m, map.component)[map.target] = apply_mapping(map, all.at(map.source));
  m.text_layout = plan.text_layout;
  m.dropped_text_layers = plan.dropped_text_layers;
  m.ignored = plan.ignored;
  return m;
}

}  // namespace

TensorMap& component_tensors(ModelFiles& m, Component c) {
  switch (c) {
    case Component::Unet:
      return m.unet;
    case Component::Vae:
      return m.vae;
    case Component::TextEncoder:
      return m.text_encoder;
    case Component::TextEncoder2:
      return m.text_encoder_2;
  }
  return m.unet;
}

const TensorMap& component_tensors(const ModelFiles& m, Component c) {
  return component_tensors(const_cast<ModelFiles&>(m), c);
}

void read_component_folder(const std::string& dir, const std::string& component, ModelFiles& m) {
  TensorMap* tensors = component == "unet"             ? &m.unet
                       : component == "vae"            ? &m.vae
                       : component == "text_encoder"   ? &m.text_encoder
                       : component == "text_encoder_2" ? &m.text_encoder_2
                                                       : nullptr;
  json* config = component == "unet"           ? &m.unet_config
                 : component == "vae"          ? &m.vae_config
                 : component == "text_encoder" ? &m.text_encoder_config
                                               : &m.text_encoder_2_config;
  DF_CHECK(tensors, "unknown model component '", component,
           "' (expected unet, vae, text_encoder or text_encoder_2)");
  const fs::path sub(dir);
  DF_CHECK(fs::is_directory(sub), component, " folder ", dir, " does not exist");
  const fs::path config_file = sub / "config.json";
  DF_CHECK(fs::is_regular_file(config_file), sub.string(), ": config.json is missing");
  *config = read_json(config_file);
  *tensors = load_component_weights(sub);

  // Older transformers kept the position ids buffer; older diffusers named the VAE attention
  // query/key/value/proj_attn with linear or 1x1-convolution weights.
  if (component == "text_encoder" || component == "text_encoder_2") {
    for (auto it = tensors->begin(); it != tensors->end();) {
      if (it->first.ends_with("embeddings.position_ids")) {
        m.ignored.push_back(component + "/" + it->first);
        it = tensors->erase(it);
      } else {
        ++it;
      }
    }
  }
  if (component == "vae") {
    TensorMap vae;
    for (const auto& [name, t] : m.vae) {
      const std::string modern = modern_vae_name(name);
      const bool attention = modern.find(".mid_block.attentions.") != std::string::npos &&
                             modern.ends_with(".weight") &&
                             modern.find("group_norm") == std::string::npos;
      TensorMapping conv_to_linear{name, Component::Vae, modern, TensorOp::Conv1x1ToLinear};
      vae[modern] = attention && t.dim() == 4 ? apply_mapping(conv_to_linear, t) : t;
    }
    m.vae = std::move(vae);
  }
}

void read_tokenizer_folder(const std::string& dir, ModelFiles& m, const std::string& tokenizer) {
  DF_CHECK(tokenizer == "tokenizer" || tokenizer == "tokenizer_2", "unknown tokenizer '", tokenizer,
           "' (expected tokenizer or tokenizer_2)");
  const bool second = tokenizer == "tokenizer_2";
  std::string& vocab = second ? m.tokenizer_2_vocab : m.tokenizer_vocab;
  std::string& merges = second ? m.tokenizer_2_merges : m.tokenizer_merges;
  std::string& pad = second ? m.tokenizer_2_pad_token : m.tokenizer_pad_token;
  const fs::path tok(dir);
  vocab = read_text_if_present(tok / "vocab.json");
  merges = read_text_if_present(tok / "merges.txt");
  pad = pad_token_of(read_json_if_present(tok / "special_tokens_map.json"));
  if (pad.empty()) pad = pad_token_of(read_json_if_present(tok / "tokenizer_config.json"));
}

ModelFiles open_model(const std::string& path, DType dequantized) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  DF_CHECK(!path.empty() && fs::exists(st),
           "model not found: ", path.empty() ? "(empty path)" : path, " does not exist");
  if (fs::is_directory(st)) return open_diffusers_folder(path);
  DF_CHECK(fs::is_regular_file(st), path, ": not a regular file or folder");
  // model_index.json itself names its folder.
  if (fs::path(path).filename() == "model_index.json")
    return open_diffusers_folder(fs::path(path).parent_path());
  return open_single_file(path, dequantized);
}

}  // namespace diffuse::io
