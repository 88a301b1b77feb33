// The reference's tiny CLIP (training/clip_*) as a transformers CLIPModel folder, for the tests
// of `diffuse eval` and its library (train/r_precision.h).
#pragma once
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "io/safetensors.h"
#include "test_util.h"

namespace diffuse::test {

// Writes DIR/config.json + DIR/model.safetensors from the reference's tiny CLIP; with
// `text_apart`, model.safetensors lacks the text tower, which goes to DIR/text_model.safetensors
// instead. Returns false when the reference files are absent.
inline bool write_tiny_clip_folder(const std::string& dir, bool text_apart = false) {
  const std::string json_path = reference_path("training/clip_training.json");
  const std::string weights_path = reference_path("training/clip_tiny_model.safetensors");
  if (json_path.empty() || weights_path.empty()) return false;
  std::filesystem::create_directories(dir);
  std::ifstream in(json_path);
  const auto meta = nlohmann::json::parse(in);
  std::ofstream(dir + "/config.json") << meta.at("config").dump(1);
  io::TensorMap all = io::load_safetensors(weights_path), clip, text;
  for (auto& [name, t] : all)
    (text_apart && name.rfind("text_model.", 0) == 0 ? text : clip).emplace(name, t);
  io::save_safetensors(dir + "/model.safetensors", clip);
  if (text_apart) io::save_safetensors(dir + "/text_model.safetensors", text);
  return true;
}

}  // namespace diffuse::test
