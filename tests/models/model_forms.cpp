#include "model_forms.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace diffuse::test {

namespace fs = std::filesystem;

static nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

std::vector<std::string> reference_models() { return reference_model_folders(); }

static std::string config_dir_for(const std::string& model, const nlohmann::json& ref) {
  fs::path own = fs::path(reference_dir()) / model / "diffusers";
  if (fs::exists(own / "model_index.json")) return own.string();
  std::string kind = ref.value("kind", "");
  std::string base = kind.substr(0, kind.find('-'));
  for (auto& m : reference_models()) {
    auto j = read_json(fs::path(reference_dir()) / m / "reference.json");
    fs::path d = fs::path(reference_dir()) / m / "diffusers";
    if (j.value("kind", "") == base && fs::exists(d / "model_index.json")) return d.string();
  }
  return "";
}

std::vector<ModelForm> model_forms(const std::string& model) {
  std::vector<ModelForm> out;
  fs::path dir = fs::path(reference_dir()) / model;
  auto ref = read_json(dir / "reference.json");
  std::string cfg = config_dir_for(model, ref);
  if (fs::exists(dir / "diffusers" / "model_index.json"))
    out.push_back({model, dir.string(), (dir / "diffusers").string(), "diffusers", "", ref});
  std::vector<fs::path> files;
  for (auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (auto& p : files) {
    std::string name = p.filename().string(), ext = p.extension().string();
    if (name == "reference.safetensors" || name == "hostile.ckpt") continue;
    if (ext == ".safetensors") out.push_back({model, dir.string(), p.string(), "safetensors", cfg, ref});
    if (ext == ".ckpt") out.push_back({model, dir.string(), p.string(), "ckpt", cfg, ref});
    if (ext == ".gguf") out.push_back({model, dir.string(), p.string(), "gguf", cfg, ref});
  }
  return out;
}

std::vector<ModelForm> all_model_forms() {
  std::vector<ModelForm> out;
  for (auto& m : reference_models())
    for (auto& f : model_forms(m)) out.push_back(f);
  return out;
}

const ModelForm* first_diffusers_form() {
  static const std::vector<ModelForm> forms = all_model_forms();
  for (auto& f : forms)
    if (f.kind == "diffusers") return &f;
  return nullptr;
}

std::string form_test_name(const ModelForm& f) {
  std::string s = f.model + "_" + f.kind;
  for (auto& c : s)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

double form_tolerance(const ModelForm& f) { return f.quantized() ? 3e-2 : 1e-4; }

std::unique_ptr<pipeline::ModelBundle> open_form(const ModelForm& f) {
  pipeline::BundleOptions opt;
  opt.config_dir = f.config_dir;
  opt.data_dir = data_dir();
  return pipeline::ModelBundle::open(f.path, opt);
}

}  // namespace diffuse::test
