#include "apps/cli/common.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "core/parallel.h"

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

void add_threads_option(CLI::App& sub, int& threads, const std::string& help) {
  sub.add_option("-t,--threads", threads, help + " (default: all cores)")
      ->check(CLI::Range(1, max_threads()));
}

void check_output_path(const std::string& path, const std::string& what) {
  namespace fs = std::filesystem;
  DF_CHECK(!path.empty(), what, ": no output path given");
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  DF_CHECK(fs::is_directory(dir, ec), what, " ", path, ": the folder ", dir.string(),
           " does not exist");
  DF_CHECK(access(dir.c_str(), W_OK | X_OK) == 0, what, " ", path, ": the folder ", dir.string(),
           " is not writable");
  const fs::file_status st = fs::symlink_status(p, ec);  // the link itself, not its target
  DF_CHECK(!fs::exists(st) || fs::is_regular_file(st) || fs::is_symlink(st), what, " ", path,
           ": exists and is not a regular file (",
           fs::is_directory(st) ? "a directory"
           : fs::is_fifo(st)    ? "a FIFO"
           : fs::is_socket(st)  ? "a socket"
                                : "a device or other special file",
           "); give a new path or a regular file to replace");
}

void check_input_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  DF_CHECK(std::filesystem::exists(st), what, " ", path, ": not found");
  DF_CHECK(std::filesystem::is_regular_file(st), what, " ", path, ": not a regular file");
}

CLI::Validator finite_range(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v))
          return s + " is not a finite number";
        if (v < lo || v > hi) return str(s, " is out of range [", lo, ", ", hi, "]");
        return "";
      },
      str("NUMBER in [", lo, ", ", hi, "]"));
}

CLI::Validator seed_range() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        int64_t v = 0;
        const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
        if (r.ec == std::errc::result_out_of_range || (r.ec == std::errc() && v < -1))
          return s + " is out of range: -1 (random) or 0 to 9223372036854775807";
        if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return s + " is not an integer";
        return "";
      },
      "INT");
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
