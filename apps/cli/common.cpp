#include "apps/cli/common.h"

#include <CLI/CLI.hpp>
#include <cstdlib>

namespace diffuse::cli {

std::string data_dir() {
  if (const char* e = std::getenv("DIFFUSE_DATA_DIR"); e && *e) return e;
  return DIFFUSE_DATA_DIR;
}

std::unique_ptr<pipeline::ModelBundle> open_model(const std::string& path,
                                                  const std::string& config_dir) {
  pipeline::BundleOptions opt;
  opt.config_dir = config_dir;
  opt.data_dir = data_dir();
  return pipeline::ModelBundle::open(path, opt);
}

void add_model_options(CLI::App& sub, std::string& model, std::string& config_dir, bool required) {
  auto* m = sub.add_option("-m,--model", model,
                           "Model: a diffusers folder, or a single .safetensors, .ckpt or .gguf "
                           "file in the original Stable Diffusion layout");
  if (required) m->required();
  sub.add_option("--config", config_dir,
                 "A diffusers folder whose config.json files describe the model (for single "
                 "files whose head counts differ from the published models')");
}

}  // namespace diffuse::cli
