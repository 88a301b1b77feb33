// diffuse convert end to end: a converted model generates the same image as the original, and
// bad arguments get one clear error line without touching the output.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/image.h"
#include "io/mmap_file.h"
#include "io/model_files.h"
#include "model_forms.h"
#include "test_util.h"

namespace diffuse {
namespace {

namespace fs = std::filesystem;

std::string q(const std::string& s) {
  return test::shell_quote(s);
}
int diffuse(const std::string& args, std::string* out) {
  return test::run_diffuse(args, out);
}

const test::ModelForm* first_form(const std::string& kind) {
  static const std::vector<test::ModelForm> forms = test::all_model_forms();
  for (const auto& f : forms)
    if (f.kind == kind && f.model.find("inpaint") == std::string::npos) return &f;
  return nullptr;
}

std::string fresh_dir(const std::string& name) {
  const fs::path p = fs::path(test::temp_dir()) / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// A small, fast generation; the image's pixels.
std::vector<uint8_t> generate(const std::string& model_args, const std::string& png) {
  std::string out;
  EXPECT_EQ(diffuse("generate " + model_args +
                        " -p 'a red cube' --steps 2 -W 64 -H 64 -s 7 -t 1 -q -o " + q(png),
                    &out),
            0)
      << out;
  return io::load_image(png, 3).pixels;
}

std::string model_args(const std::string& path, const std::string& config = "") {
  return "-m " + q(path) + (config.empty() ? "" : " --config " + q(config));
}

TEST(ConvertCli, SingleFileToFolderGeneratesTheSameImage) {
  const test::ModelForm* f = first_form("safetensors");
  if (!f) GTEST_SKIP() << "no single-file model in the reference dir";
  const std::string dir = fresh_dir("convert-single");
  const std::string folder = dir + "/model";
  std::string out;
  ASSERT_EQ(
      diffuse("convert " + q(f->path) + " " + q(folder) + " --config " + q(f->config_dir), &out), 0)
      << out;
  EXPECT_NE(out.find("diffusers folder"), std::string::npos) << out;
  EXPECT_TRUE(fs::is_regular_file(folder + "/model_index.json"));
  const auto want = generate(model_args(f->path, f->config_dir), dir + "/original.png");
  const auto got = generate(model_args(folder), dir + "/converted.png");
  ASSERT_FALSE(want.empty());
  EXPECT_TRUE(got == want) << "the converted folder generates a different image";
}

TEST(ConvertCli, FolderToSingleFileGeneratesTheSameImage) {
  const std::vector<test::ModelForm> forms = test::all_model_forms();
  for (const char* model_kind : {"sd1", "sd2"}) {
    const test::ModelForm* f = nullptr;
    for (const auto& form : forms)
      if (form.kind == "diffusers" && form.model.starts_with(model_kind)) f = &form;
    if (!f) continue;
    SCOPED_TRACE(f->model);
    const std::string dir = fresh_dir(std::string("convert-folder-") + model_kind);
    const std::string single = dir + "/model.safetensors";
    std::string out;
    ASSERT_EQ(diffuse("convert -q " + q(f->path) + " " + q(single), &out), 0) << out;
    EXPECT_TRUE(out.empty()) << out;
    const auto want = generate(model_args(f->path), dir + "/original.png");
    // A single file does not store head counts: the folder's configs are given as for any
    // single file of a model with non-published shapes.
    const auto got = generate(model_args(single, f->path), dir + "/converted.png");
    ASSERT_FALSE(want.empty());
    EXPECT_TRUE(got == want) << "the converted single file generates a different image";
  }
}

TEST(ConvertCli, DtypeAndForce) {
  const test::ModelForm* f = first_form("diffusers");
  if (!f) GTEST_SKIP() << "no diffusers folder in the reference dir";
  const std::string dir = fresh_dir("convert-dtype");
  const std::string single = dir + "/m.safetensors";
  std::string out;
  ASSERT_EQ(diffuse("convert " + q(f->path) + " " + q(single) + " --dtype bf16", &out), 0) << out;
  for (const auto& [name, t] : io::open_model(single).unet)
    ASSERT_EQ(t.dtype(), DType::BF16) << name;
  // An existing output is refused without --force and left as it was.
  const std::string before = io::read_text_file(single);
  EXPECT_NE(diffuse("convert " + q(f->path) + " " + q(single) + " --dtype f16", &out), 0);
  EXPECT_NE(out.find("already exists"), std::string::npos) << out;
  EXPECT_NE(out.find("--force"), std::string::npos) << out;
  EXPECT_EQ(io::read_text_file(single), before);
  ASSERT_EQ(diffuse("convert " + q(f->path) + " " + q(single) + " --dtype f16 --force", &out), 0)
      << out;
  for (const auto& [name, t] : io::open_model(single).unet)
    ASSERT_EQ(t.dtype(), DType::F16) << name;
  // --to single with an extensionless name; the result reads back.
  ASSERT_EQ(diffuse("convert -q " + q(f->path) + " " + q(dir + "/plain") + " --to single", &out), 0)
      << out;
  EXPECT_EQ(io::open_model(dir + "/plain").layout, io::ModelLayout::SingleFile);
}

TEST(ConvertCli, ClearErrors) {
  const test::ModelForm* f = first_form("diffusers");
  if (!f) GTEST_SKIP() << "no diffusers folder in the reference dir";
  const std::string dir = fresh_dir("convert-errors");
  fs::create_directories(dir + "/photos");
  std::ofstream(dir + "/photos/cat.png") << "x";
  const std::string m = q(f->path);
  const std::pair<std::string, std::string> cases[] = {
      {"convert " + m + " " + q(dir + "/a") + " --to zip", "unknown --to 'zip'"},
      {"convert " + m + " " + q(dir + "/a") + " --dtype int4", "unknown dtype 'int4'"},
      {"convert " + m + " " + q(dir + "/a.safetensors") + " --to diffusers", "writes a folder"},
      {"convert " + m + " " + q(dir + "/a.ckpt"), ".safetensors files only"},
      {"convert " + m + " " + q(dir + "/a.v2") + " --to single", "safetensors only"},
      {"convert " + q(dir + "/missing") + " " + q(dir + "/a"), "does not exist"},
      {"convert " + m + " " + q(dir + "/photos"), "already exists"},
      {"convert " + m + " " + q(dir + "/photos") + " --force", "not a diffusers model folder"},
      {"convert " + m + " " + q(dir + "/no/such/dir/a"), "does not exist"},
  };
  for (const auto& [args, message] : cases) {
    std::string out;
    EXPECT_NE(diffuse(args, &out), 0) << args;
    EXPECT_NE(out.find(message), std::string::npos) << args << "\n" << out;
    EXPECT_NE(out.find("diffuse: error: "), std::string::npos) << out;
  }
  EXPECT_TRUE(fs::exists(dir + "/photos/cat.png"));
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename(), "photos") << "left behind: " << e.path();

  std::string help;
  EXPECT_EQ(diffuse("convert --help", &help), 0);
  for (const char* word : {"--to", "--dtype", "--config", "--force", "diffusers", "single"})
    EXPECT_NE(help.find(word), std::string::npos) << word;
}

}  // namespace
}  // namespace diffuse
