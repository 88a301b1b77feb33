// `diffuse` on SDXL models end to end: info, generate at the UNet's own size with the
// micro-conditioning and refiner options, the infotext, and the errors a user meets (a bad pair,
// a refiner of another latent space) before any work.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/image.h"
#include "io/safetensors.h"
#include "model_forms.h"
#include "test_util.h"

using namespace diffuse;
namespace fs = std::filesystem;

namespace {

struct Pair {
  std::string base, refiner;  // diffusers folders ("" when absent)
};

Pair sdxl_models() {
  Pair p;
  for (const auto& [kind, out] : {std::pair{"sdxl", &p.base}, std::pair{"sdxl-refiner", &p.refiner}})
    for (const auto& m : test::reference_folders_of_kind({kind})) {
      const fs::path d = fs::path(test::reference_dir()) / m / "diffusers";
      if (fs::exists(d / "model_index.json")) {
        *out = d.string();
        break;
      }
    }
  return p;
}

std::string q(const std::string& s) { return test::shell_quote(s); }

TEST(SdxlCli, InfoNamesTheFamilyAndBothEncoders) {
  const Pair p = sdxl_models();
  if (p.base.empty()) GTEST_SKIP() << "no SDXL reference model";
  std::string out;
  ASSERT_EQ(test::run_diffuse("info --json -m " + q(p.base), &out), 0) << out;
  auto j = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_EQ(j["family"], "SDXL");
  EXPECT_GT(j["components"]["text_encoder_2"]["parameters"].get<int64_t>(), 0);
  EXPECT_EQ(j["text_encoder"]["default_clip_skip"], 2);
  if (p.refiner.empty()) return;
  ASSERT_EQ(test::run_diffuse("info --json -m " + q(p.refiner), &out), 0) << out;
  j = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_EQ(j["family"], "SDXL-refiner");
  EXPECT_FALSE(j.contains("text_encoder"));
  EXPECT_TRUE(j.contains("text_encoder_2"));
}

TEST(SdxlCli, GenerateWithRefinerAtTheModelsSize) {
  const Pair p = sdxl_models();
  if (p.base.empty() || p.refiner.empty()) GTEST_SKIP() << "no SDXL base and refiner";
  const std::string png = test::temp_dir() + "/xl.png", lat = test::temp_dir() + "/xl.safetensors";
  std::string out;
  ASSERT_EQ(test::run_diffuse("generate -q -m " + q(p.base) + " --refiner " + q(p.refiner) +
                                  " --refiner-switch-at 0.7 -p 'a red boat' --steps 4 --seed 3 "
                                  "--sampler euler --precision fp32 --original-size 256,192 "
                                  "--crop-top-left 8,16 --save-latents " + q(lat) + " -o " + q(png),
                              &out),
            0)
      << out;
  const io::Image img = io::load_image(png);
  EXPECT_EQ(img.width, test::diffusers_default_side(p.base));
  EXPECT_EQ(img.height, test::diffusers_default_side(p.base));
  const std::string params = io::read_png_text(png)["parameters"];
  EXPECT_NE(params.find("Refiner: diffusers, Refiner switch at: 0.7"), std::string::npos) << params;
  // The micro-conditioning reaches the model: another original size gives other latents.
  const std::string lat2 = test::temp_dir() + "/xl2.safetensors";
  ASSERT_EQ(test::run_diffuse("generate -q -m " + q(p.base) + " -p 'a red boat' --steps 2 --seed 3 "
                                  "--sampler euler --precision fp32 --save-latents " + q(lat2) +
                                  " -o " + q(test::temp_dir() + "/a.png"),
                              &out),
            0)
      << out;
  const std::string lat3 = test::temp_dir() + "/xl3.safetensors";
  ASSERT_EQ(test::run_diffuse("generate -q -m " + q(p.base) + " -p 'a red boat' --steps 2 --seed 3 "
                                  "--sampler euler --precision fp32 --original-size 64,64 "
                                  "--save-latents " + q(lat3) + " -o " + q(test::temp_dir() + "/b.png"),
                              &out),
            0)
      << out;
  EXPECT_GT(test::rel_error(io::load_safetensors(lat2).at("latents"),
                            io::load_safetensors(lat3).at("latents")),
            1e-4);
}

TEST(SdxlCli, BadSizesAndMismatchedRefinerAreClearErrors) {
  const Pair p = sdxl_models();
  if (p.base.empty()) GTEST_SKIP() << "no SDXL reference model";
  std::string out;
  const std::string png = test::temp_dir() + "/never.png";
  EXPECT_NE(test::run_diffuse("generate -m " + q(p.base) + " -p x --original-size 12 -o " + q(png), &out), 0);
  EXPECT_NE(out.find("--original-size"), std::string::npos) << out;
  const auto sd1 = test::reference_folders_of_kind({"sd1"});
  if (!sd1.empty()) {
    const std::string other = (fs::path(test::reference_dir()) / sd1[0] / "diffusers").string();
    EXPECT_NE(test::run_diffuse("generate -m " + q(p.base) + " --refiner " + q(other) +
                                    " -p x --steps 2 -o " + q(png),
                                &out),
              0);
    EXPECT_NE(out.find("latent space"), std::string::npos) << out;
  }
  EXPECT_FALSE(fs::exists(png));
}

// bench runs SDXL's UNet with its added conditioning (pooled embedding, time ids).
TEST(SdxlCli, BenchTimesTheUnetWithAddedConditioning) {
  const Pair p = sdxl_models();
  if (p.base.empty()) GTEST_SKIP() << "no SDXL reference model";
  std::string out;
  const std::string size = std::to_string(test::diffusers_default_side(p.base));
  ASSERT_EQ(test::run_diffuse("bench --json --runs 1 -m " + q(p.base) + " --size " + size, &out), 0) << out;
  const auto j = nlohmann::json::parse(out.substr(out.rfind("\n{") + 1));
  EXPECT_GT(j.at(size).at("unet_step_s").get<double>(), 0.0) << out;
  EXPECT_GT(j.at(size).at("text_encode_s").get<double>(), 0.0) << out;
}

// convert both ways: folder -> single file -> folder; each form generates the same latents.
TEST(SdxlCli, ConvertBothWaysKeepsTheModel) {
  const Pair p = sdxl_models();
  if (p.base.empty()) GTEST_SKIP() << "no SDXL reference model";
  for (const std::string& model : {p.base, p.refiner}) {
    if (model.empty()) continue;
    const std::string dir = test::temp_dir() + "/conv-" + std::to_string(std::hash<std::string>{}(model));
    const std::string single = dir + ".safetensors", back = dir + "-back";
    std::string out;
    ASSERT_EQ(test::run_diffuse("convert -q " + q(model) + " " + q(single) + " --to single --dtype f32", &out), 0) << out;
    ASSERT_EQ(test::run_diffuse("convert -q " + q(single) + " " + q(back) + " --to diffusers --config " + q(model), &out), 0) << out;
    EXPECT_TRUE(fs::exists(fs::path(back) / "text_encoder_2" / "config.json"));
    const bool base = model == p.base;
    auto latents = [&](const std::string& args, const std::string& name) {
      const std::string lat = test::temp_dir() + "/" + name + ".safetensors";
      std::string log;
      const std::string img2img =
          base ? "" : " --strength 0.5 -i " + q(test::temp_dir() + "/src.png");
      EXPECT_EQ(test::run_diffuse("generate -q " + args + " -p 'a boat' --steps 2 --seed 1 --sampler "
                                  "euler --precision fp32 --save-latents " + q(lat) + img2img +
                                  " -o " + q(test::temp_dir() + "/" + name + ".png"),
                                  &log),
                0)
          << log;
      const io::TensorMap t = io::load_safetensors(lat);
      return t.at("latents").clone();
    };
    if (!base) {  // the refiner refines an image
      std::string log;
      ASSERT_EQ(test::run_diffuse("generate -q -m " + q(p.base) + " -p x --steps 1 --seed 1 -o " +
                                      q(test::temp_dir() + "/src.png"),
                                  &log),
                0)
          << log;
    }
    const Tensor a = latents("-m " + q(model), "folder");
    const Tensor b = latents("-m " + q(single) + " --config " + q(model), "single");
    const Tensor c = latents("-m " + q(back), "back");
    EXPECT_REL_NEAR(b, a, 0.0);
    EXPECT_REL_NEAR(c, a, 0.0);
  }
}

}  // namespace
