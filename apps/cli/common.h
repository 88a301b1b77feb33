// Helpers shared by the sub-commands.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "pipeline/model_bundle.h"

namespace diffuse::cli {

// The fetched registry data: $DIFFUSE_DATA_DIR, else the build's third_party folder.
std::string data_dir();

// Opens a model given with -m (diffusers folder, .safetensors, .ckpt, .gguf), with an optional
// --config diffusers folder for what a single file does not record.
std::unique_ptr<pipeline::ModelBundle> open_model(const std::string& path,
                                                  const std::string& config_dir = "");

// Adds the -m/--model and --config options to a sub-command.
void add_model_options(CLI::App& sub, std::string& model, std::string& config_dir, bool required);

}  // namespace diffuse::cli
