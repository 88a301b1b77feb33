// Golden tests of open_model: every model of the reference dir, opened in each of its forms
// (diffusers folder, single files), must give the same canonical tensors; and the single-file
// name map must turn the full-size manifests' names into the diffusers ones exactly.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "io/mmap_file.h"
#include "io/model_files.h"
#include "io/name_map_check.h"
#include "io/name_map_ldm.h"
#include "manifests.h"
#include "test_util.h"

namespace diffuse::io {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct SingleForm {
  std::string path;
  double tolerance;  // relative error per tensor
};

struct ModelForms {
  std::string name;
  std::string folder;               // "" when the model has no diffusers folder
  std::vector<SingleForm> singles;  // single files in the original layout
};

// The models of the reference dir: each subfolder holding a diffusers/ folder or single files
// named after the model (NAME.safetensors, NAME.ckpt), and GGUF conversions (*.gguf, quantized:
// judged within the quantization's rounding).
// SDXL folders (kind sdxl, sdxl-refiner) too: open_model reads them whether or not the
// pipeline runs them yet.
std::set<std::string> model_folders(const std::string& root) {
  const auto listed = test::reference_model_folders();
  std::set<std::string> out(listed.begin(), listed.end());
  for (const auto& e : fs::directory_iterator(root)) {
    const fs::path ref = e.path() / "reference.json";
    if (!e.is_directory() || !fs::is_regular_file(ref)) continue;
    const json j = json::parse(read_text_file(ref.string()), nullptr, false);
    const std::string kind = j.is_object() ? j.value("kind", "") : "";
    if (kind == "sdxl" || kind == "sdxl-refiner") out.insert(e.path().filename().string());
  }
  return out;
}

std::vector<ModelForms> reference_models() {
  std::vector<ModelForms> out;
  const std::string root = test::reference_dir();
  if (root.empty() || !fs::is_directory(root)) return out;
  for (const std::string& name : model_folders(root)) {
    const fs::directory_entry entry(fs::path(root) / name);
    ModelForms m;
    m.name = name;
    if (fs::is_regular_file(entry.path() / "diffusers" / "model_index.json"))
      m.folder = (entry.path() / "diffusers").string();
    for (const char* ext : {".safetensors", ".ckpt"}) {
      const fs::path single = entry.path() / (m.name + ext);
      if (fs::is_regular_file(single)) m.singles.push_back({single.string(), 1e-3});
    }
    std::vector<std::string> ggufs;
    for (const auto& f : fs::directory_iterator(entry.path()))
      if (f.is_regular_file() && f.path().extension() == ".gguf")
        ggufs.push_back(f.path().string());
    std::sort(ggufs.begin(), ggufs.end());
    for (const std::string& g : ggufs) m.singles.push_back({g, 2e-2});
    if (!m.folder.empty() || !m.singles.empty()) out.push_back(m);
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.name < b.name; });
  return out;
}

// Same names, shapes and values (as float, within `tol` relative error per tensor).
void expect_same_tensors(const TensorMap& got, const TensorMap& want, const std::string& what,
                         double tol) {
  ASSERT_FALSE(want.empty()) << what << ": no tensors";
  ASSERT_NO_THROW(check_tensor_names(got, names_and_shapes(want), what));
  int bad = 0;
  for (const auto& [name, w] : want) {
    const Tensor& g = got.at(name);
    const double e = test::rel_error(g, w);
    if (!(e <= tol) && ++bad <= 10)
      ADD_FAILURE() << what << ": " << name << " relative error " << e;
  }
  EXPECT_EQ(bad, 0) << what << ": tensors with different values";
}

int count_text_layers(const TensorMap& text) {
  int n = 0;
  while (text.count("text_model.encoder.layers." + std::to_string(n) + ".layer_norm1.weight")) ++n;
  return n;
}

TEST(ModelFiles, EveryReferenceModelGivesTheSameTensorsInEveryForm) {
  const auto models = reference_models();
  if (models.empty()) GTEST_SKIP() << "no models in the reference dir";
  for (const ModelForms& forms : models) {
    SCOPED_TRACE(forms.name);
    std::vector<ModelFiles> opened;
    std::vector<std::string> labels;
    std::vector<double> tolerances;
    if (!forms.folder.empty()) {
      opened.push_back(open_model(forms.folder));
      labels.push_back(forms.folder);
      tolerances.push_back(0);
      const ModelFiles& f = opened.back();
      EXPECT_EQ(f.layout, ModelLayout::DiffusersFolder);
      EXPECT_TRUE(f.model_index.is_object());
      EXPECT_TRUE(f.unet_config.is_object());
      EXPECT_TRUE(f.vae_config.is_object());
      EXPECT_TRUE(f.scheduler_config.is_object());
      EXPECT_EQ(f.dropped_text_layers, 0);
      // Each text encoder has the layers its config announces (an SDXL refiner has only the
      // second).
      EXPECT_FALSE(f.text_encoder.empty() && f.text_encoder_2.empty());
      if (!f.text_encoder.empty()) {
        EXPECT_EQ(count_text_layers(f.text_encoder),
                  f.text_encoder_config.value("num_hidden_layers", -1));
      }
      if (!f.text_encoder_2.empty()) {
        EXPECT_EQ(count_text_layers(f.text_encoder_2),
                  f.text_encoder_2_config.value("num_hidden_layers", -1));
      }
      const fs::path tok_config = fs::path(forms.folder) / "tokenizer" / "tokenizer_config.json";
      if (fs::is_regular_file(tok_config)) {
        const json tc = json::parse(read_text_file(tok_config.string()));
        if (tc.contains("pad_token") && tc["pad_token"].is_string()) {
          EXPECT_EQ(f.tokenizer_pad_token, tc["pad_token"].get<std::string>());
        }
      }
    }
    for (const SingleForm& single : forms.singles) {
      opened.push_back(open_model(single.path));
      labels.push_back(single.path);
      tolerances.push_back(single.tolerance);
      const ModelFiles& s = opened.back();
      EXPECT_EQ(s.layout, ModelLayout::SingleFile);
      EXPECT_NE(s.text_layout, TextEncoderLayout::None);
      EXPECT_EQ(s.dropped_text_layers, s.text_layout == TextEncoderLayout::OpenClip ? 1 : 0);
      EXPECT_TRUE(s.unet_config.is_null());
      EXPECT_FALSE(s.unet.empty());
      EXPECT_FALSE(s.vae.empty());
      EXPECT_FALSE(s.text_encoder.empty() && s.text_encoder_2.empty());
    }
    ASSERT_FALSE(opened.empty());
    // Every form against the first one (the folder when there is one).
    for (size_t i = 1; i < opened.size(); ++i) {
      const double tol = std::max(tolerances[i], tolerances[0]);
      expect_same_tensors(opened[i].unet, opened[0].unet, "unet of " + labels[i], tol);
      expect_same_tensors(opened[i].vae, opened[0].vae, "vae of " + labels[i], tol);
      if (!opened[0].text_encoder.empty())
        expect_same_tensors(opened[i].text_encoder, opened[0].text_encoder,
                            "text encoder of " + labels[i], tol);
      if (!opened[0].text_encoder_2.empty())
        expect_same_tensors(opened[i].text_encoder_2, opened[0].text_encoder_2,
                            "text encoder 2 of " + labels[i], tol);
      EXPECT_EQ(opened[i].text_encoder.empty(), opened[0].text_encoder.empty()) << labels[i];
      EXPECT_EQ(opened[i].text_encoder_2.empty(), opened[0].text_encoder_2.empty()) << labels[i];
    }
  }
}

TEST(ModelFiles, ModelIndexFileOpensItsFolder) {
  for (const ModelForms& forms : reference_models()) {
    if (forms.folder.empty()) continue;
    const ModelFiles m = open_model((fs::path(forms.folder) / "model_index.json").string());
    EXPECT_EQ(m.layout, ModelLayout::DiffusersFolder);
    EXPECT_FALSE(m.unet.empty());
    return;
  }
  GTEST_SKIP() << "no diffusers folder in the reference dir";
}

// manifests.json: "<model>/single_file" (or "<model>/single_file/<component>") and
// "<model>/diffusers/<component>", each name -> shape.
TEST(ModelFiles, FullSizeManifestsMapExactly) {
  DF_REQUIRE_REF(path, "manifests/manifests.json");
  const json manifests = json::parse(read_text_file(path));
  const std::map<std::string, NamedShapes> singles = single_file_manifests(manifests);
  ASSERT_FALSE(singles.empty()) << "no single_file manifests";
  for (const auto& [model, names] : singles) {
    SCOPED_TRACE(model);
    MappedNames mapped;
    ASSERT_NO_THROW(mapped = map_single_file_names(names, model));
    int compared = 0;
    const std::pair<const char*, const NamedShapes*> parts[] = {
        {"unet", &mapped.unet},
        {"vae", &mapped.vae},
        {"text_encoder", &mapped.text_encoder},
        {"text_encoder_2", &mapped.text_encoder_2}};
    for (const auto& [component, got] : parts) {
      const std::string key = model + "/diffusers/" + component;
      if (!manifests.contains(key)) {
        EXPECT_TRUE(got->empty()) << key << " is not in the manifests";
        continue;
      }
      EXPECT_NO_THROW(check_tensor_names(*got, manifest_entries(manifests[key]), key));
      ++compared;
    }
    EXPECT_GT(compared, 0) << "no diffusers manifest to compare with";
    EXPECT_EQ(mapped.dropped_text_layers,
              mapped.text_layout == TextEncoderLayout::OpenClip ? 1 : 0);
  }
}

}  // namespace
}  // namespace diffuse::io
