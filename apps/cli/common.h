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

// Adds -t/--threads (CPU threads; default: all cores), checked to be 1 to max_threads() at
// parse time, so `-t 100000` is one clear error before anything is loaded.
void add_threads_option(CLI::App& sub, int& threads, const std::string& help = "CPU threads");

// Refuses, before any work, an output path that cannot take the result: its folder missing or
// not writable, or the path an existing directory, FIFO, device or socket. A regular file or a
// symlink (replaced by the atomic rename, never followed) is fine. `what` names the option.
void check_output_path(const std::string& path, const std::string& what);
// Refuses an input that is missing or not a regular file (a FIFO would block the read).
void check_input_file(const std::string& path, const std::string& what);

// CLI11 checks: a finite number in [lo, hi] (refusing nan and inf); a 64-bit seed (-1 for a
// random one, else 0 to 2^63 - 1), refused rather than clamped when out of range.
CLI::Validator finite_range(double lo, double hi);
CLI::Validator seed_range();

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
