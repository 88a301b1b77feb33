// Full-size checkpoints in the published layouts (random weights, written by the shared
// random_checkpoint.py tool from the reference manifests): `diffuse info` reads them and
// reports the published models' parameter counts.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"

using namespace diffuse;
namespace fs = std::filesystem;

namespace {

// Writes ENTRY of the manifest as a single file; "" when the tool or manifest is absent.
std::string make_checkpoint(const std::string& entry, const std::string& name) {
  fs::path tool = fs::path(test::reference_dir()) / ".." / "tools" / "random_checkpoint.py";
  std::string manifest = test::reference_path("manifests/manifests.json");
  if (!fs::exists(tool) || manifest.empty()) return "";
  std::string out = test::temp_dir() + "/" + name;
  std::ostringstream cmd;
  cmd << "python3 '" << tool.string() << "' '" << manifest << "' " << entry << " '" << out << "' 2>&1";
  std::string log;
  int rc = test::run_command(cmd.str(), &log);
  EXPECT_EQ(rc, 0) << log;
  return rc == 0 ? out : "";
}

nlohmann::json info(const std::string& path) {
  std::string out;
  std::ostringstream cmd;
  cmd << "'" << test::cli_path() << "' info --json -m '" << path << "' 2>&1";
  int rc = test::run_command(cmd.str(), &out);
  EXPECT_EQ(rc, 0) << out;
  return nlohmann::json::parse(out);
}

TEST(FullSize, Sd15ParameterCounts) {
  std::string path = make_checkpoint("sd15/single_file", "sd15.safetensors");
  if (path.empty()) GTEST_SKIP() << "random_checkpoint.py or the manifests are absent";
  auto j = info(path);
  EXPECT_EQ(j["family"], "SD1");
  // The published SD 1.5 component sizes.
  EXPECT_EQ(j["components"]["unet"]["parameters"].get<int64_t>(), 859520964);
  EXPECT_EQ(j["components"]["vae"]["parameters"].get<int64_t>(), 83653863);
  EXPECT_EQ(j["components"]["text_encoder"]["parameters"].get<int64_t>(), 123060480);
  EXPECT_EQ(j["text_encoder"]["heads"].get<int64_t>(), 12);
  fs::remove(path);
}

TEST(FullSize, Sd21IsSd2WithOpenClip) {
  std::string path = make_checkpoint("sd21/single_file", "sd21.safetensors");
  if (path.empty()) GTEST_SKIP() << "random_checkpoint.py or the manifests are absent";
  auto j = info(path);
  EXPECT_EQ(j["family"], "SD2");
  EXPECT_EQ(j["text_encoder"]["published_layers"].get<int64_t>(), 24);
  EXPECT_EQ(j["text_encoder"]["layers"].get<int64_t>(), 23);
  EXPECT_EQ(j["text_encoder"]["default_clip_skip"].get<int64_t>(), 2);
  EXPECT_EQ(j["components"]["unet"]["parameters"].get<int64_t>(), 865910724);
  fs::remove(path);
}

// The full-size SDXL base (6.5 GiB of random weights in the published single-file layout): its
// family, structure and the published component sizes, and its default image size.
TEST(FullSize, SdxlBaseParameterCounts) {
  std::string path = make_checkpoint("sdxl/single_file", "sdxl.safetensors");
  if (path.empty()) GTEST_SKIP() << "random_checkpoint.py or the manifests are absent";
  auto j = info(path);
  EXPECT_EQ(j["family"], "SDXL");
  EXPECT_EQ(j["components"]["unet"]["parameters"].get<int64_t>(), 2567463684);
  EXPECT_EQ(j["components"]["vae"]["parameters"].get<int64_t>(), 83653863);
  EXPECT_EQ(j["components"]["text_encoder"]["parameters"].get<int64_t>(), 123060480);
  EXPECT_EQ(j["components"]["text_encoder_2"]["parameters"].get<int64_t>(), 694659840);
  EXPECT_EQ(j["text_encoder"]["heads"].get<int64_t>(), 12);
  EXPECT_EQ(j["text_encoder_2"]["heads"].get<int64_t>(), 20);
  EXPECT_EQ(j["text_encoder_2"]["layers"].get<int64_t>(), 32);
  fs::remove(path);
}

}  // namespace
