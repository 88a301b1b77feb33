#include "apps/cli/common.h"

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"

namespace diffuse::cli {

std::string data_dir() {
  if (const char* e = std::getenv("DIFFUSE_DATA_DIR"); e && *e) return e;
  return DIFFUSE_DATA_DIR;
}

std::string default_model() {
  if (const char* e = std::getenv("DIFFUSE_MODEL"); e && *e) return e;
  const std::string dir = DIFFUSE_DEFAULT_MODEL;
  DF_CHECK(std::filesystem::is_regular_file(std::filesystem::path(dir) / "model_index.json"),
           "no model given (-m MODEL), and the default model is not at ", dir,
           " (set DIFFUSE_MODEL to choose another default)");
  return dir;
}

std::string model_or_default(const std::string& model) {
  return model.empty() ? default_model() : model;
}

std::unique_ptr<pipeline::ModelBundle> open_model(const std::string& path,
                                                  const std::string& config_dir,
                                                  pipeline::Precision precision) {
  pipeline::BundleOptions opt;
  opt.config_dir = config_dir;
  opt.data_dir = data_dir();
  opt.precision = precision;
  return pipeline::ModelBundle::open(path, opt);
}

void add_precision_option(CLI::App& sub, std::string& value) {
  sub.add_option("--precision", value,
                 "Compute precision: fp32 (exact: diffusers' numbers), bf16 (16-bit products "
                 "with f32 sums: about twice as fast on CPUs with AVX512_BF16, images within "
                 "35 dB of fp32's) or auto (bf16 where the CPU has it natively, else fp32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
}

void add_model_options(CLI::App& sub, std::string& model, std::string& config_dir, bool required,
                       bool with_default) {
  auto* m = sub.add_option("-m,--model", model,
                           std::string("Model: a diffusers folder, or a single .safetensors, .ckpt "
                                       "or .gguf file in the original Stable Diffusion layout") +
                               (with_default ? " (default: $DIFFUSE_MODEL, else the emoji model "
                                               "that ships with diffuse)"
                                             : ""));
  if (required) m->required();
  sub.add_option("--config", config_dir,
                 "A diffusers folder whose config.json files describe the model (for single "
                 "files whose head counts differ from the published models')");
}

}  // namespace diffuse::cli
