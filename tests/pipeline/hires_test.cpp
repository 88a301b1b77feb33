// The hires fix against the reference's two-pass runs (hires/, diffusers' txt2img then img2img
// on the upscaled latents): each latent upscaler against torch's interpolate, the second pass's
// trajectory, the whole generate() for every upscaler, and the decoded image. Parameters, sizes
// and seeds are read from hires.json.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <optional>

#include "image_compare.h"
#include "io/safetensors.h"
#include "model_forms.h"
#include "pipeline/generate.h"
#include "test_util.h"

using namespace diffuse;
using nlohmann::json;

namespace {

struct HiresCase {
  std::string model;  // key of hires.json: models
  std::string mode;   // key of its upscale_modes
};
void PrintTo(const HiresCase& c, std::ostream* os) { *os << c.model << " " << c.mode; }

json hires_json() {
  return json::parse(std::ifstream(test::reference_path("hires/hires.json")));
}

std::vector<HiresCase> hires_cases() {
  std::vector<HiresCase> out;
  if (!std::filesystem::exists(test::reference_path("hires/hires.json"))) return out;
  const json all = hires_json();
  for (auto& [m, spec] : all.at("models").items())
    for (auto& [mode, _] : spec.at("upscale_modes").items()) out.push_back({m, mode});
  return out;
}

struct HiresSetup {
  json spec;
  std::map<std::string, Tensor> ref;
  std::unique_ptr<pipeline::ModelBundle> model;
  pipeline::GenerateRequest req;
};

// The model with the run's scheduler, and the two-pass request hires.json describes.
HiresSetup setup(const HiresCase& c) {
  HiresSetup s;
  s.spec = hires_json().at("models").at(c.model);
  s.ref = io::load_safetensors(test::reference_path("hires/" + c.model + ".safetensors"));
  s.model = test::open_form(test::model_forms(s.spec.at("model")).at(0));
  s.model->scheduler_config = s.spec.at("scheduler_base");
  const json& base = s.spec.at("runs").at("hires.base");
  auto& r = s.req;
  r.prompt = s.spec.at("prompt");
  r.negative_prompt = s.spec.at("negative_prompt");
  r.cfg_scale = s.spec.at("guidance_scale");
  r.seed = s.spec.at("seed");
  r.steps = s.spec.at("steps");
  r.width = base.at("width");
  r.height = base.at("height");
  r.sampler = "euler";
  r.init_latents = s.ref.at("hires.latents0");
  r.hires.enabled = true;
  r.hires.upscaler = s.spec.at("upscale_modes").at(c.mode).at("a1111");
  r.hires.steps = s.spec.at("hr_steps");
  r.hires.strength = s.spec.at("strength");
  const Tensor& up = s.ref.at("hires.upscaled." + c.mode);
  const int64_t f = int64_t(1) << (s.model->vae_config.block_out_channels.size() - 1);
  r.hires.width = up.size(3) * f;
  r.hires.height = up.size(2) * f;
  return s;
}

class HiresGolden : public testing::TestWithParam<HiresCase> {};

TEST_P(HiresGolden, UpscalerMatchesTorchInterpolate) {
  HiresSetup s = setup(GetParam());
  const auto& up = pipeline::find_hires_upscaler(s.req.hires.upscaler);
  ASSERT_TRUE(up.latent);
  const Tensor& want = s.ref.at("hires.upscaled." + GetParam().mode);
  Tensor got = pipeline::upscale_latents(s.ref.at("hires.base.final_latents"), up, want.size(2),
                                         want.size(3));
  EXPECT_REL_NEAR(got, want, 1e-5);
}

TEST_P(HiresGolden, SecondPassTrajectoryMatches) {
  HiresSetup s = setup(GetParam());
  const std::string key = "hires." + GetParam().mode;
  pipeline::GenerateRequest h = pipeline::hires_request(*s.model, s.req);
  EXPECT_EQ(h.steps, s.spec.at("hr_steps").get<int>());
  h.init_image_latents = s.ref.at("hires.upscaled." + GetParam().mode);
  pipeline::validate_request(*s.model, h);
  const int64_t skip = s.model->default_clip_skip();
  const auto cond = pipeline::request_conditioning(*s.model, h, h.prompt, skip, false);
  const auto uncond = pipeline::request_conditioning(*s.model, h, h.negative_prompt, skip, true);
  std::vector<Tensor> traj;
  Tensor out = pipeline::sample_latents(*s.model, h, cond, uncond, Tensor(), h.seed,
                                        [&](int, const Tensor& x) { traj.push_back(x.clone()); });
  const Tensor& want = s.ref.at(key + ".trajectory");
  ASSERT_EQ(int64_t(traj.size()), want.size(0)) << "steps run";
  EXPECT_EQ(int64_t(traj.size()), s.spec.at("runs").at(key).at("steps_run").get<int64_t>());
  for (size_t i = 0; i < traj.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    EXPECT_REL_NEAR(traj[i], want.select(0, int64_t(i)).unsqueeze(0), 1e-3);
  }
  EXPECT_REL_NEAR(out, s.ref.at(key + ".final_latents"), 1e-3);
}

TEST_P(HiresGolden, GenerateRunsBothPasses) {
  HiresSetup s = setup(GetParam());
  std::vector<int> totals;
  int calls = 0;
  const auto res = pipeline::generate(*s.model, s.req, [&](int, int, int total) {
    ++calls;
    totals.push_back(total);
    return true;
  });
  EXPECT_REL_NEAR(res.latents, s.ref.at("hires." + GetParam().mode + ".final_latents"), 1e-3);
  const int64_t both = s.spec.at("steps").template get<int64_t>() +
                       s.spec.at("runs").at("hires." + GetParam().mode).at("steps_run").get<int64_t>();
  EXPECT_EQ(calls, both);
  EXPECT_EQ(totals.back(), both);
  EXPECT_EQ(pipeline::steps_per_batch(*s.model, s.req), both);
  ASSERT_EQ(res.images.size(), 1u);
  EXPECT_EQ(res.images[0].width, s.req.hires.width);
  EXPECT_EQ(res.images[0].height, s.req.hires.height);
  if (GetParam().mode == "bilinear" && s.ref.count("hires.image")) {
    EXPECT_LE(test::max_pixel_difference(res.images[0], s.ref.at("hires.image")), 1.0 / 255 + 1e-3);
  }
}

INSTANTIATE_TEST_SUITE_P(Runs, HiresGolden, testing::ValuesIn(hires_cases()), [](const auto& i) {
  std::string s = i.param.model + "_" + i.param.mode;
  for (auto& c : s)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
});
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(HiresGolden);

}  // namespace

namespace {

// The first SD1 case, or none.
std::optional<HiresCase> sd1_case() {
  for (auto& c : hires_cases())
    if (hires_json().at("models").at(c.model).at("model") == "sd1-tiny" && c.mode == "bilinear")
      return c;
  return std::nullopt;
}

// A scale gives the size it names; each image of a batch gets the second pass of its own seed
// (the same as alone); the image upscalers go through the VAE and give a different, full-size
// result.
TEST(Hires, ScaleBatchesAndImageUpscalers) {
  const auto c = sd1_case();
  if (!c) GTEST_SKIP() << "no hires reference for sd1-tiny";
  HiresSetup s = setup(*c);
  pipeline::GenerateRequest req = s.req;
  req.hires.width = req.hires.height = 0;
  req.hires.scale = double(s.req.hires.width) / double(s.req.width);
  const auto scaled = pipeline::generate(*s.model, req);
  EXPECT_REL_NEAR(scaled.latents, s.ref.at("hires.bilinear.final_latents"), 1e-3);

  // batch of two: image 1 is the run of seed + 1 alone
  req.init_latents = Tensor();
  req.batch_size = 2;
  const auto two = pipeline::generate(*s.model, req);
  ASSERT_EQ(two.latents.size(0), 2);
  pipeline::GenerateRequest one = req;
  one.batch_size = 1;
  one.seed = req.seed + 1;
  const auto alone = pipeline::generate(*s.model, one);
  EXPECT_REL_NEAR(two.latents.slice(0, 1, 2), alone.latents, 1e-5);

  for (const char* up : {"lanczos", "nearest"}) {
    SCOPED_TRACE(up);
    one.hires.upscaler = up;
    const auto img = pipeline::generate(*s.model, one);
    EXPECT_EQ(img.latents.shape(), alone.latents.shape());
    EXPECT_GT(test::rel_error(img.latents, alone.latents), 1e-3) << "the image path changes the result";
    EXPECT_EQ(img.images.at(0).width, req.hires.width > 0 ? req.hires.width : s.req.hires.width);
  }
}

TEST(Hires, BadSettingsAreOneClearError) {
  const auto c = sd1_case();
  if (!c) GTEST_SKIP() << "no hires reference for sd1-tiny";
  HiresSetup s = setup(*c);
  auto expect_error = [&](pipeline::GenerateRequest r, const std::string& words) {
    try {
      pipeline::validate_request(*s.model, r);
      ADD_FAILURE() << "accepted; wanted an error about " << words;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  pipeline::GenerateRequest r = s.req;
  r.hires.upscaler = "esrgan";
  expect_error(r, "unknown hires upscaler 'esrgan'");
  r = s.req;
  r.hires.strength = 0;
  expect_error(r, "hires strength");
  r = s.req;
  r.hires.width = r.hires.height = 0;
  r.hires.scale = 0.5;
  expect_error(r, "hires scale");
  r = s.req;
  r.hires.sampler = "nope";
  expect_error(r, "unknown sampler 'nope'");
  r = s.req;
  r.init_image = Tensor::zeros({1, 3, r.height, r.width});
  expect_error(r, "txt2img second pass");
  r = s.req;
  r.hires.prompt = "a dog <lora:other:1>";
  expect_error(r, "other LoRAs");
  r = s.req;
  r.hires.steps = -1;
  expect_error(r, "hires steps");
}

TEST(Hires, InfotextRecordsTheSecondPassAsA1111Does) {
  pipeline::GenerateRequest r;
  r.prompt = "a cat";
  r.sampler = "euler";
  r.hires.enabled = true;
  r.hires.scale = 2;
  r.hires.steps = 10;
  r.hires.strength = 0.55;
  r.hires.upscaler = "latent";
  std::string text = pipeline::format_parameters(pipeline::image_parameters(r, "m", 1));
  EXPECT_NE(text.find("Denoising strength: 0.55, "), std::string::npos) << text;
  EXPECT_NE(text.find("Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("Hires sampler"), std::string::npos) << text;
  r.hires.width = 1024;
  r.hires.height = 768;
  r.hires.sampler = "dpmpp_2m";
  r.hires.prompt = "a cat, detailed";
  r.hires.upscaler = "latent-bicubic-antialiased";
  text = pipeline::format_parameters(pipeline::image_parameters(r, "m", 1));
  EXPECT_NE(text.find("Hires resize: 1024x768"), std::string::npos) << text;
  EXPECT_NE(text.find("Hires upscaler: Latent (bicubic antialiased)"), std::string::npos) << text;
  EXPECT_NE(text.find("Hires sampler: DPM++ 2M"), std::string::npos) << text;
  EXPECT_NE(text.find("Hires prompt: \"a cat, detailed\""), std::string::npos) << text;
}

}  // namespace
