// diffuse convert: a model from any readable form to a diffusers folder or one .safetensors file.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "apps/cli/command.h"
#include "apps/cli/common.h"
#include "io/model_writer.h"
#include "pipeline/model_export.h"

namespace diffuse::cli {
namespace {

namespace fs = std::filesystem;

struct ConvertArgs {
  std::string input, output, to, dtype, config;
  bool force = false, quiet = false;
};

bool ends_with_safetensors(const std::string& path) {
  return fs::path(path).extension() == ".safetensors";
}

io::ModelLayout output_layout(const ConvertArgs& a) {
  const bool safetensors = ends_with_safetensors(a.output);
  const std::string ext = fs::path(a.output).extension().string();
  for (const char* weights : {".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft"})
    DF_CHECK(ext != weights, a.output,
             ": convert writes diffusers folders and .safetensors files "
             "only (name it ",
             fs::path(a.output).stem().string(), ".safetensors, or a folder)");
  if (a.to.empty())
    return safetensors ? io::ModelLayout::SingleFile : io::ModelLayout::DiffusersFolder;
  if (a.to == "diffusers") {
    DF_CHECK(!safetensors, a.output,
             ": --to diffusers writes a folder, but the name ends in .safetensors (use "
             "--to single, or a folder name)");
    return io::ModelLayout::DiffusersFolder;
  }
  if (a.to == "single") {
    DF_CHECK(safetensors || ext.empty(), a.output,
             ": --to single writes safetensors only (name it ", fs::path(a.output).stem().string(),
             ".safetensors)");
    return io::ModelLayout::SingleFile;
  }
  DF_FAIL("unknown --to '", a.to, "' (expected diffusers or single)");
}

// "unet 686 tensors (859520964 parameters), vae ..."
std::string summary(const io::ModelFiles& f) {
  std::string out;
  for (const auto& [name, t] : {std::pair<const char*, const io::TensorMap*>{"unet", &f.unet},
                                {"vae", &f.vae},
                                {"text_encoder", &f.text_encoder}}) {
    if (t->empty()) continue;
    int64_t params = 0;
    for (const auto& [n, x] : *t) params += x.numel();
    out += str(out.empty() ? "" : ", ", name, " ", t->size(), " tensors (", params, " parameters)");
  }
  return out;
}

int run_convert(const ConvertArgs& a) {
  const io::ModelLayout layout = output_layout(a);
  io::SaveOptions opt;
  if (!a.dtype.empty()) opt.dtype = io::parse_save_dtype(a.dtype);
  std::error_code ec;
  DF_CHECK(a.force || !fs::exists(fs::symlink_status(a.output, ec)), a.output,
           ": already exists (give --force to replace it)");
  auto bundle = open_model(a.input, a.config);
  const io::ModelFiles files = layout == io::ModelLayout::DiffusersFolder
                                   ? pipeline::files_for_export(*bundle, a.config)
                                   : bundle->files;
  io::save_model(files, a.output, layout, opt);
  if (!a.quiet)
    std::fprintf(stderr, "diffuse: wrote %s (%s, %s, %s): %s\n", a.output.c_str(),
                 layout == io::ModelLayout::DiffusersFolder ? "diffusers folder" : "single file",
                 bundle->family_name().c_str(),
                 a.dtype.empty() ? "dtypes kept" : dtype_name(*opt.dtype), summary(files).c_str());
  return 0;
}

Command convert_cmd(
    "convert", "Convert a model to a diffusers folder or a single .safetensors file",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<ConvertArgs>();
      sub.add_option("input", a->input,
                     "The model: a diffusers folder, or a single .safetensors, .ckpt or .gguf "
                     "file in the original Stable Diffusion layout")
          ->required();
      sub.add_option("output", a->output, "Where to write: a folder, or a .safetensors file")
          ->required();
      sub.add_option("--to", a->to,
                     "diffusers (a folder: model_index.json, unet/, vae/, text_encoder/, "
                     "scheduler/, tokenizer/) or single (one .safetensors in the original "
                     "layout). Default: single when OUTPUT ends in .safetensors, else diffusers");
      sub.add_option("--dtype", a->dtype,
                     "Convert the weights to f16, bf16 or f32 (default: keep each tensor's)");
      sub.add_option("--config", a->config,
                     "A diffusers folder whose config.json files describe the model (single files "
                     "do not store head counts; needed for --to diffusers when they are not the "
                     "published ones)");
      sub.add_flag("--force", a->force, "Replace OUTPUT if it exists (a model folder or file)");
      sub.add_flag("-q,--quiet", a->quiet, "Print nothing on success");
      sub.footer(
          "Everything is written beside OUTPUT and renamed into place when complete: a failed\n"
          "conversion leaves no partial output (a killed one at most a temporary\n"
          "NAME.tmp-* or .NAME.tmp-* beside it). A folder is only replaced when it is a\n"
          "diffusers folder (model_index.json) or empty.\n"
          "From a single file, tokenizer/ gets --config's tokenizer files when given, else the\n"
          "published CLIP vocabulary (vocab.json, merges.txt) and the family's pad token, so\n"
          "that diffusers and transformers load the folder as it is.\n"
          "Quantized GGUF weights are written dequantized (f32, or --dtype).\n"
          "SD2 single files: the OpenCLIP text tower's unused last block is written with zero\n"
          "weights (an identity block), as the published files hold one block more than SD2 uses.\n"
          "Examples:\n"
          "  diffuse convert v1-5-pruned-emaonly.safetensors sd15/ --dtype f16\n"
          "  diffuse convert sd15/ sd15.safetensors\n"
          "  diffuse convert custom-sd2.ckpt custom-sd2/ --config stable-diffusion-2-1/");
      return [a]() { return run_convert(*a); };
    });

}  // namespace
}  // namespace diffuse::cli
