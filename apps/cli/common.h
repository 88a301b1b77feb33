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
std::unique_ptr<pipeline::ModelBundle> open_model(
    const std::string& path, const std::string& config_dir = "",
    pipeline::Precision precision = pipeline::Precision::Fp32);

// Adds --precision (auto, fp32 or bf16) to a sub-command, with `value`'s default.
void add_precision_option(CLI::App& sub, std::string& value);

// The model used when -m is not given: $DIFFUSE_MODEL, else the emoji model that ships with
// diffuse (models/emoji of the source tree). Throws a clear Error when it is not there.
std::string default_model();
// `model` when given, else default_model().
std::string model_or_default(const std::string& model);

// Adds the -m/--model and --config options to a sub-command. `with_default`: -m may be left out
// for the default model (the command then calls model_or_default()).
void add_model_options(CLI::App& sub, std::string& model, std::string& config_dir, bool required,
                       bool with_default = false);

}  // namespace diffuse::cli
