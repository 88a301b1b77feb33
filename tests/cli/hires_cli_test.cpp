// `diffuse generate` with the hires fix: the second pass's size and infotext, and the errors a
// user meets before any work (nothing written).
#include <gtest/gtest.h>

#include <filesystem>

#include "io/image.h"
#include "model_forms.h"
#include "test_util.h"

using namespace diffuse;
namespace fs = std::filesystem;

namespace {

std::string q(const std::string& s) { return test::shell_quote(s); }

TEST(HiresCli, SecondPassSizeAndInfotext) {
  const test::ModelForm* f = test::first_diffusers_form();
  if (!f) GTEST_SKIP() << "no reference model";
  const std::string png = test::temp_dir() + "/hires.png";
  fs::remove(png);
  std::string out;
  ASSERT_EQ(test::run_diffuse("generate -q -m " + q(f->path) +
                                  " -p 'a castle' -W 64 -H 64 --steps 3 --sampler euler -s 5 "
                                  "--hires-scale 2 --hires-steps 4 --hires-strength 0.5 -o " + q(png),
                              &out),
            0)
      << out;
  EXPECT_NE(out.find("hires fix to 128x128, 4 steps of euler at strength 0.5, latent"), std::string::npos)
      << out;
  const io::Image img = io::load_image(png, 3);
  EXPECT_EQ(img.width, 128);
  EXPECT_EQ(img.height, 128);
  const std::string params = io::read_png_text(png).at("parameters");
  EXPECT_NE(params.find("Size: 64x64"), std::string::npos) << params;
  EXPECT_NE(params.find("Denoising strength: 0.5"), std::string::npos) << params;
  EXPECT_NE(params.find("Hires upscale: 2, Hires steps: 4, Hires upscaler: Latent"), std::string::npos)
      << params;

  // an image upscaler and a size instead of a factor
  ASSERT_EQ(test::run_diffuse("generate -q -m " + q(f->path) +
                                  " -p 'a castle' -W 64 -H 64 --steps 2 -s 5 --hires-size 128x64 "
                                  "--hires-upscaler lanczos -o " + q(png),
                              &out),
            0)
      << out;
  EXPECT_EQ(io::load_image(png, 3).width, 128);
  EXPECT_EQ(io::load_image(png, 3).height, 64);
  EXPECT_NE(io::read_png_text(png).at("parameters").find("Hires resize: 128x64"), std::string::npos);
}

TEST(HiresCli, BadSettingsFailBeforeAnyWork) {
  const test::ModelForm* f = test::first_diffusers_form();
  if (!f) GTEST_SKIP() << "no reference model";
  const std::string png = test::temp_dir() + "/hires-bad.png";
  const std::string base = "generate -q -m " + q(f->path) + " -p x -W 64 -H 64 --steps 2 -o " + q(png);
  const std::pair<std::string, std::string> cases[] = {
      {"--hires-scale 2 --hires-upscaler esrgan", "unknown hires upscaler 'esrgan'"},
      {"--hires-size 128", "--hires-size takes a size WxH"},
      {"--hires-scale 2 --hires-size 128x128", "not both"},
      {"--hires-scale 4 --max-size 128", "above --max-size 128"},
      {"--hires-scale 2 --hires-sampler nope", "unknown sampler 'nope'"},
      {"--hires-scale 2 --hires-strength 0", "hires strength"},
  };
  for (const auto& [args, words] : cases) {
    SCOPED_TRACE(args);
    fs::remove(png);
    std::string out;
    EXPECT_NE(test::run_diffuse(base + " " + args, &out), 0) << out;
    EXPECT_NE(out.find(words), std::string::npos) << out;
    EXPECT_FALSE(fs::exists(png));
  }
}

}  // namespace
