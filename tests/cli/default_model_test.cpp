// The model that ships with diffuse (models/emoji): small enough to ship, a complete diffusers
// pipeline with the CLIP that scores it, and what `diffuse generate` draws with when given no -m.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/image.h"
#include "test_util.h"

using namespace diffuse;
namespace fs = std::filesystem;

namespace {

fs::path shipped_model() {
  return fs::path(test::source_dir()) / "models" / "emoji";
}

}  // namespace

TEST(DefaultModel, ShipsAsACompletePipelineOfAtMost25MB) {
  const fs::path m = shipped_model();
  ASSERT_TRUE(fs::is_regular_file(m / "model_index.json")) << m;
  for (const char* part : {"unet", "vae", "text_encoder", "scheduler", "tokenizer", "clip"})
    EXPECT_TRUE(fs::is_directory(m / part)) << part;
  uintmax_t bytes = 0;
  for (const auto& e : fs::recursive_directory_iterator(m))
    if (e.is_regular_file()) bytes += e.file_size();
  EXPECT_LE(bytes, uintmax_t(25) * 1000 * 1000);
  // The CLIP vocabulary comes from the registry package fetched at set-up, never from the repo.
  EXPECT_FALSE(fs::exists(m / "tokenizer" / "vocab.json"));
  EXPECT_FALSE(fs::exists(m / "tokenizer" / "merges.txt"));
}

TEST(DefaultModel, GenerateWithoutAModelUsesIt) {
  const std::string dir = test::temp_dir() + "/shipped";
  fs::create_directories(dir);
  std::string out;
  // No -m and no $DIFFUSE_MODEL: the shipped model, at its own size.
  ASSERT_EQ(test::run_command("env -u DIFFUSE_MODEL " + test::shell_quote(test::cli_path()) +
                                  " generate -p 'red heart' --steps 4 -s 1 -t 1 -q -o " +
                                  test::shell_quote(dir + "/a.png") + " 2>&1",
                              &out),
            0)
      << out;
  ASSERT_EQ(test::run_command(test::shell_quote(test::cli_path()) + " generate -m " +
                                  test::shell_quote(shipped_model().string()) +
                                  " -p 'red heart' --steps 4 -s 1 -t 1 -q -o " +
                                  test::shell_quote(dir + "/b.png") + " 2>&1",
                              &out),
            0)
      << out;
  const io::Image a = io::load_image(dir + "/a.png"), b = io::load_image(dir + "/b.png");
  EXPECT_EQ(a.pixels, b.pixels);
  const int side = test::diffusers_default_side(shipped_model().string());
  EXPECT_EQ(a.width, side);
  EXPECT_EQ(a.height, side);
  EXPECT_NE(io::read_png_text(dir + "/a.png")["parameters"].find("Model: emoji"),
            std::string::npos);
}

// The goal of the shipped model: on 100 held-out captions (emoji the model never saw), CLIP
// R-precision of its images at least 0.3 and at least half of the real images' figure. The
// held-out folder is built from the registry packages fetched at set-up.
TEST(DefaultModel, MeetsItsRPrecisionGoal) {
  const fs::path npm = fs::path(test::data_dir()) / "npm" / "node_modules";
  if (!fs::exists(npm / "emoji-datasource-google") || !fs::exists(npm / "emojilib"))
    GTEST_SKIP() << "the emoji packages are not fetched (scripts/fetch_data.sh)";
  if (std::system("command -v node >/dev/null 2>&1") != 0) GTEST_SKIP() << "node is not installed";
  const std::string dir = test::temp_dir() + "/emoji_data";
  std::string out;
  ASSERT_EQ(
      test::run_command(
          "node " + test::shell_quote(test::source_dir() + "/scripts/emoji_dataset.mjs") + " " +
              test::shell_quote(dir) + " --npm " + test::shell_quote(npm.string()) + " 2>&1",
          &out),
      0)
      << out;
  ASSERT_EQ(test::run_command(test::shell_quote(test::cli_path()) + " eval -m " +
                                  test::shell_quote(shipped_model().string()) + " --data " +
                                  test::shell_quote(dir + "/heldout") +
                                  " --count 100 --steps 20 --cfg-scale 3 -q --json 2>/dev/null",
                              &out),
            0)
      << out;
  const std::string last = out.substr(out.find_last_of('{'));
  const auto r = nlohmann::json::parse(last);
  const double gen = r["r_precision_generated"], real = r["r_precision_real"];
  EXPECT_GE(gen, 0.3) << last;
  EXPECT_GE(gen, 0.5 * real) << last;
}
