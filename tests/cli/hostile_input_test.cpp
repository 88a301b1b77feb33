// The diffuse command on hostile input (the probe's findings): each case is one clear error
// line and a non-zero exit, quickly, never a crash, a hang or a runaway allocation.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model_forms.h"
#include "test_util.h"

using namespace diffuse;
namespace fs = std::filesystem;

namespace {

struct CliRun {
  int rc = 0;
  std::string out;
  double seconds = 0;
};

// `diffuse ARGS` under a time limit (timeout's exit code 124 when exceeded).
CliRun run_bounded(const std::string& args, int limit_s = 60) {
  CliRun r;
  const auto t0 = std::chrono::steady_clock::now();
  r.rc = test::run_command("timeout " + std::to_string(limit_s) + " " +
                               test::shell_quote(test::cli_path()) + " " + args + " 2>&1",
                           &r.out);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

// A clean refusal: exit code 1 (CLI11 usage errors: its own small codes), a message holding
// `what`, no crash (run_command gives -1 for a signal), no timeout.
void expect_refused(const CliRun& r, const std::string& what) {
  EXPECT_GT(r.rc, 0) << r.out;
  EXPECT_NE(r.rc, 124) << "timed out: " << r.out;
  EXPECT_NE(r.out.find(what), std::string::npos) << r.out;
}

// A copy of the first reference diffusers folder, with `rel` replaced by `content`.
std::string hostile_copy(const std::string& name, const std::string& rel,
                         const std::string& content) {
  const test::ModelForm* f = test::first_diffusers_form();
  if (!f) return "";
  const fs::path dst = fs::path(test::temp_dir()) / name;
  fs::remove_all(dst);
  fs::copy(f->path, dst, fs::copy_options::recursive);
  std::ofstream(dst / rel, std::ios::binary | std::ios::trunc) << content;
  return dst.string();
}

// A copy of the first reference diffusers folder whose JSON file `rel` has `key` set to `value`.
std::string hostile_config(const std::string& name, const std::string& rel, const std::string& key,
                           const nlohmann::json& value) {
  const test::ModelForm* f = test::first_diffusers_form();
  if (!f) return "";
  std::ifstream in(fs::path(f->path) / rel);
  nlohmann::json j = nlohmann::json::parse(in);
  j[key] = value;
  return hostile_copy(name, rel, j.dump());
}

#define DF_REQUIRE_DIFFUSERS(dir) \
  if ((dir).empty()) GTEST_SKIP() << "no diffusers model in the reference"

TEST(HostileCli, ThreadCountIsCapped) {
  for (const char* n : {"100000", "70000", "-5"}) {
    const CliRun r = run_bounded(std::string("generate -p x -t ") + n, 30);
    expect_refused(r, "--threads");
    EXPECT_LT(r.seconds, 10) << n;
  }
}

TEST(HostileCli, DeeplyNestedConfigsAreOneClearError) {
  const std::string brackets(1000000, '[');
  std::string objects;
  for (int i = 0; i < 60000; ++i) objects += "{\"a\":";
  const std::pair<const char*, const std::string*> cases[] = {
      {"unet/config.json", &brackets},
      {"text_encoder/config.json", &brackets},
      {"scheduler/scheduler_config.json", &objects}};
  for (const auto& [rel, text] : cases) {
    SCOPED_TRACE(rel);
    const std::string dir = hostile_copy("deep", rel, *text);
    DF_REQUIRE_DIFFUSERS(dir);
    CliRun r = run_bounded("info -m " + test::shell_quote(dir));
    expect_refused(r, "nested more than");
    EXPECT_NE(r.out.find(rel), std::string::npos) << r.out;
    const std::string out = test::temp_dir() + "/converted";
    r = run_bounded("convert -q " + test::shell_quote(dir) + " " + test::shell_quote(out));
    expect_refused(r, "nested more than");
    EXPECT_FALSE(fs::exists(out));
  }
}

TEST(HostileCli, AbsurdConfigValuesAreRefusedByName) {
  const std::tuple<const char*, const char*, nlohmann::json> cases[] = {
      {"vae/config.json", "layers_per_block", 1000000},
      {"vae/config.json", "block_out_channels", nlohmann::json::array({32, 1 << 20})},
      {"scheduler/scheduler_config.json", "num_train_timesteps", 1e9},
      {"scheduler/scheduler_config.json", "steps_offset", -3}};
  for (const auto& [rel, key, value] : cases) {
    SCOPED_TRACE(std::string(rel) + " " + key);
    const std::string dir = hostile_config("absurd", rel, key, value);
    DF_REQUIRE_DIFFUSERS(dir);
    const CliRun r = run_bounded("info -m " + test::shell_quote(dir));
    expect_refused(r, key);
    EXPECT_LT(r.seconds, 10);
  }
}

// A 54-byte BMP whose header claims side x side pixels (24-bit), with no pixel data.
std::string huge_bmp(const std::string& name, int side) {
  std::string b = "BM";
  auto le = [&](uint32_t v, int n) {
    for (int k = 0; k < n; ++k) b.push_back(char(uint8_t(v >> (8 * k))));
  };
  le(54 + uint32_t(side) * 3 * uint32_t(side), 4), le(0, 4), le(54, 4);  // file header
  le(40, 4), le(uint32_t(side), 4), le(uint32_t(side), 4), le(1, 2), le(24, 2);
  le(0, 4), le(0, 4), le(2835, 4), le(2835, 4), le(0, 4), le(0, 4);
  const std::string path = test::temp_dir() + "/" + name;
  std::ofstream(path, std::ios::binary) << b;
  return path;
}

std::string model_arg() {
  const test::ModelForm* f = test::first_diffusers_form();
  return f ? "-m " + test::shell_quote(f->path) : "";
}

TEST(HostileCli, HugeImagesAreRefusedFromTheirHeader) {
  const std::string model = model_arg();
  if (model.empty()) GTEST_SKIP() << "no diffusers model in the reference";
  std::vector<std::string> images = {huge_bmp("huge.bmp", 16000)};
  const fs::path probe =
      fs::path(test::reference_dir()) / ".." / "probe" / "bmp-154-bytes-16000x16000.bmp";
  if (fs::exists(probe)) images.push_back(probe.string());
  const std::string small = huge_bmp("small.bmp", 64);
  for (const std::string& img : images) {
    SCOPED_TRACE(img);
    for (const std::string& opt :
         {"-i " + test::shell_quote(img),
          "-i " + test::shell_quote(small) + " --mask " + test::shell_quote(img)}) {
      const CliRun r = run_bounded("generate -q --steps 1 -p x " + model + " " + opt + " -o " +
                                   test::shell_quote(test::temp_dir() + "/never.png"));
      expect_refused(r, "16000x16000, larger than 4096x4096");
      EXPECT_LT(r.seconds, 15);
    }
  }
}

TEST(HostileCli, MaxSizeSetsTheImageLimit) {
  const std::string model = model_arg();
  if (model.empty()) GTEST_SKIP() << "no diffusers model in the reference";
  const std::string img = test::shell_quote(huge_bmp("5000.bmp", 5000));
  const std::string out = " -o " + test::shell_quote(test::temp_dir() + "/never.png");
  CliRun r = run_bounded("generate -q --steps 1 -p x " + model + " -i " + img + out);
  expect_refused(r, "5000x5000, larger than 4096x4096");
  // Allowed now: read (stb fills the missing pixels), then refused for its size.
  r = run_bounded("generate -q --steps 1 -p x " + model + " -W 64 -H 64 --max-size 8192 -i " + img +
                  out);
  expect_refused(r, "is 5000x5000 but the requested size is 64x64");
}

TEST(HostileCli, SpecialFilesAsInputsAreRefusedWithoutBlocking) {
  const std::string model = model_arg();
  if (model.empty()) GTEST_SKIP() << "no diffusers model in the reference";
  const std::string fifo = test::temp_dir() + "/input-fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::string small = test::shell_quote(huge_bmp("small.bmp", 64));
  const std::string f = test::shell_quote(fifo);
  for (const std::string& opt :
       {"-i " + f, "-i " + small + " --mask " + f, "--init-latents " + f, "-m " + f}) {
    SCOPED_TRACE(opt);
    const std::string args = opt.rfind("-m ", 0) == 0 ? opt : model + " " + opt;
    const CliRun r = run_bounded("generate -q --steps 1 -p x " + args + " -o " +
                                     test::shell_quote(test::temp_dir() + "/never.png"),
                                 30);
    expect_refused(r, "not a regular file");
  }
}

TEST(HostileCli, BadNumbersAreRefused) {
  // Refused while parsing, before any model is opened.
  const std::pair<const char*, const char*> cases[] = {
      {"-W 0", "--width"},
      {"-W -64", "--width"},
      {"-H 0", "--height"},
      {"--seed 18446744073709551616", "out of range"},
      {"--seed 9223372036854775808", "out of range"},
      {"--seed -2", "out of range"},
      {"--eta nan", "not a finite number"},
      {"--eta 1e30", "out of range"},
      {"--cfg-scale nan", "not a finite number"},
      {"--cfg-scale inf", "not a finite number"},
      {"--strength nan", "not a finite number"}};
  for (const auto& [opt, what] : cases) {
    SCOPED_TRACE(opt);
    const CliRun r = run_bounded(std::string("generate -q -p x -m /nonexistent ") + opt, 30);
    expect_refused(r, what);
    EXPECT_EQ(r.out.find("/nonexistent"), std::string::npos) << r.out;  // before the model
  }
  const std::string lora = test::temp_dir() + "/l.safetensors";
  std::ofstream(lora) << "x";
  for (const char* w : {":1e30", ":nan", ":-inf"}) {
    const CliRun r = run_bounded(
        "generate -q -p x " + model_arg() + " --lora " + test::shell_quote(lora + w), 30);
    expect_refused(r, "is not a number in [-100, 100]");
  }
}

TEST(HostileCli, OutputPathsAreCheckedBeforeTheWork) {
  const std::string model = model_arg();
  if (model.empty()) GTEST_SKIP() << "no diffusers model in the reference";
  const std::string dir = test::temp_dir() + "/outs";
  fs::create_directories(dir + "/a-folder");
  const std::string fifo = dir + "/out-fifo.png";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::pair<std::string, std::string> cases[] = {
      {"-o " + test::shell_quote(dir + "/missing/x.png"), "does not exist"},
      {"-o " + test::shell_quote(dir + "/a-folder"), "a directory"},
      {"-o " + test::shell_quote(fifo), "a FIFO"},
      {"-o /dev/null", "a device"},
      {"-o " + test::shell_quote(dir + "/ok.png") + " --save-latents " +
           test::shell_quote(dir + "/missing/l.safetensors"),
       "--save-latents"}};
  for (const auto& [opt, what] : cases) {
    SCOPED_TRACE(opt);
    const CliRun r = run_bounded("generate -q --steps 1 -W 64 -H 64 -p x " + model + " " + opt);
    expect_refused(r, what);
    EXPECT_EQ(r.out.find("sampling"), std::string::npos) << r.out;  // nothing ran
    EXPECT_FALSE(fs::exists(dir + "/ok.png"));
  }
  // A symlink is replaced by the new file, never followed into its target.
  const std::string target = dir + "/target.txt", link = dir + "/link.png";
  std::ofstream(target) << "keep";
  fs::create_symlink(target, link);
  const CliRun r = run_bounded("generate -q --steps 1 -W 64 -H 64 -p x " + model + " -o " +
                               test::shell_quote(link));
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_FALSE(fs::is_symlink(link));
  std::ifstream in(target);
  std::string kept;
  in >> kept;
  EXPECT_EQ(kept, "keep");
}

TEST(HostileCli, ShardIndexesCannotNameFilesOutsideTheFolder) {
  const test::ModelForm* f = test::first_diffusers_form();
  if (!f) GTEST_SKIP() << "no diffusers model in the reference";
  const fs::path dir = fs::path(test::temp_dir()) / "sharded";
  for (const std::string& target :
       {std::string("../../outside.safetensors"),
        fs::absolute(test::temp_dir() + "/outside.safetensors").string()}) {
    SCOPED_TRACE(target);
    fs::remove_all(dir);
    fs::copy(f->path, dir, fs::copy_options::recursive);
    for (const auto& e : fs::directory_iterator(dir / "unet"))
      if (e.path().extension() == ".safetensors") fs::remove(e.path());
    const nlohmann::json index = {{"metadata", nlohmann::json::object()},
                                  {"weight_map", {{"conv_in.weight", target}}}};
    std::ofstream(dir / "unet" / "diffusion_pytorch_model.safetensors.index.json") << index.dump();
    const CliRun r = run_bounded("info -m " + test::shell_quote(dir.string()));
    expect_refused(r, "not a file inside the folder");
  }
}

}  // namespace
