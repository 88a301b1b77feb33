// Enumerates the reference models and every form each comes in, for golden tests.
#pragma once
#include <string>
#include <vector>

#include <memory>
#include <ostream>
#include <nlohmann/json.hpp>

#include "pipeline/model_bundle.h"

namespace diffuse::test {

struct ModelForm {
  std::string model;       // folder name under the reference dir, e.g. "sd1-tiny"
  std::string dir;         // its path
  std::string path;        // the form: a diffusers folder or a single file
  std::string kind;        // "diffusers", "safetensors", "ckpt", "gguf"
  std::string config_dir;  // a diffusers folder describing it ("" when it is one)
  nlohmann::json reference_json;
  bool quantized() const { return kind == "gguf"; }
};
// gtest prints parameters with this (instead of their bytes).
inline void PrintTo(const ModelForm& f, std::ostream* os) { *os << f.model << " (" << f.kind << ")"; }

// Models are the folders holding reference.json + reference.safetensors. A model that comes
// only as single files takes its configs from its own diffusers folder or, failing that, from
// the model whose "kind" is the first part of its kind ("sd1-inpaint" -> "sd1").
std::vector<std::string> reference_models();
std::vector<ModelForm> model_forms(const std::string& model);
// Every form of every model, and a gtest-safe name for one.
std::vector<ModelForm> all_model_forms();
// The first form that is a diffusers folder (the CLI and LoRA tests run on it); null when none.
const ModelForm* first_diffusers_form();
std::string form_test_name(const ModelForm& f);
// fp32 paths match within 1e-4. GGUF files hold q8_0 weights: measured 0.7-1.7e-2 there.
double form_tolerance(const ModelForm& f);

// Opens the form as the user would, with its config folder.
std::unique_ptr<pipeline::ModelBundle> open_form(const ModelForm& f);

}  // namespace diffuse::test
