// SDXL base and refiner against diffusers' StableDiffusionXL{,Img2Img}Pipeline: prompt
// embeddings (both encoders, pooled, the negative prompt's three forms), time ids, every
// recorded txt2img run (samplers, Turbo's one trailing step without CFG, zero negative,
// micro-conditioning, a non-square size) and img2img, from images and from latents. Runs,
// prompts, sizes and seeds are read from each folder's reference.json.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "image_compare.h"
#include "io/safetensors.h"
#include "model_forms.h"
#include "pipeline/generate.h"
#include "test_util.h"

using namespace diffuse;
using nlohmann::json;

namespace {

// Every form of every SDXL reference model except the quantized ones.
std::vector<test::ModelForm> sdxl_forms() {
  std::vector<test::ModelForm> out;
  for (const std::string& m : test::reference_folders_of_kind({"sdxl", "sdxl-refiner"}))
    for (auto& f : test::model_forms(m))
      if (!f.quantized()) out.push_back(f);
  return out;
}

struct SdxlRun {
  test::ModelForm form;
  std::string key;  // "pipe.euler", "img2img.latents"
};
void PrintTo(const SdxlRun& r, std::ostream* os) { *os << r.form.model << " " << r.key; }

// Each recorded run on the model's first f32 form (the diffusers folder).
std::vector<SdxlRun> sdxl_runs() {
  std::vector<SdxlRun> out;
  for (const std::string& m : test::reference_folders_of_kind({"sdxl", "sdxl-refiner"})) {
    for (auto& f : test::model_forms(m)) {
      if (f.quantized()) continue;
      for (auto& [key, run] : f.reference_json.at("runs").items()) out.push_back({f, key});
      break;
    }
  }
  return out;
}

// diffusers' scheduler class and options as a sampler and schedule of ours.
void sampler_of(const json& run, pipeline::GenerateRequest* req) {
  const std::string cls = run.at("scheduler");
  const json opts = run.value("scheduler_options", json::object());
  if (cls == "EulerDiscreteScheduler") req->sampler = "euler";
  else if (cls == "EulerAncestralDiscreteScheduler") req->sampler = "euler_a";
  else if (cls == "DDIMScheduler") req->sampler = "ddim";
  else if (cls == "DPMSolverMultistepScheduler") req->sampler = "dpmpp_2m";
  else FAIL() << "no sampler for " << cls;
  req->scheduler = "default";
  if (opts.value("use_karras_sigmas", false)) req->scheduler = "karras";
  if (opts.value("timestep_spacing", "") == "trailing") req->scheduler = "trailing";
}

// The request a recorded run describes. diffusers sizes are (height, width); crops (top, left).
pipeline::GenerateRequest request_of(const json& rj, const json& run) {
  pipeline::GenerateRequest req;
  req.prompt = run.value("prompt", rj.value("prompt", ""));
  req.negative_prompt = run.value("negative_prompt", "");
  req.cfg_scale = run.at("guidance_scale").get<float>();
  req.height = run.value("height", rj.at("height").get<int64_t>());
  req.width = run.value("width", rj.at("width").get<int64_t>());
  req.steps = run.at("num_inference_steps").get<int>();
  req.seed = run.at("generator_seed").get<int64_t>();
  req.rng = "cpu";
  if (run.contains("strength")) req.strength = run["strength"].get<double>();
  auto& sc = req.size_conditioning;
  if (run.contains("original_size")) {
    sc.original_height = run["original_size"][0].get<int64_t>();
    sc.original_width = run["original_size"][1].get<int64_t>();
  }
  if (run.contains("crops_coords_top_left")) {
    sc.crop_top = run["crops_coords_top_left"][0].get<int64_t>();
    sc.crop_left = run["crops_coords_top_left"][1].get<int64_t>();
  }
  if (run.contains("target_size")) {
    sc.target_height = run["target_size"][0].get<int64_t>();
    sc.target_width = run["target_size"][1].get<int64_t>();
  }
  sc.aesthetic_score = run.value("aesthetic_score", sc.aesthetic_score);
  sc.negative_aesthetic_score = run.value("negative_aesthetic_score", sc.negative_aesthetic_score);
  sampler_of(run, &req);
  return req;
}

class SdxlPromptGolden : public testing::TestWithParam<test::ModelForm> {};

TEST_P(SdxlPromptGolden, EmbeddingsPooledAndNegativesMatch) {
  const auto& f = GetParam();
  const json& rj = f.reference_json;
  auto ref = io::load_safetensors(f.dir + "/reference.safetensors");
  auto model = test::open_form(f);
  pipeline::GenerateRequest req;
  req.width = rj.at("width");
  req.height = rj.at("height");
  const int64_t skip = model->default_clip_skip();
  auto pos = pipeline::request_conditioning(*model, req, rj.at("prompt"), skip, false);
  EXPECT_REL_NEAR(pos.context, ref.at("pipe.prompt_embeds"), 1e-4);
  EXPECT_REL_NEAR(pos.pooled, ref.at("pipe.pooled_prompt_embeds"), 1e-4);
  auto neg = pipeline::request_conditioning(*model, req, rj.at("negative_prompt"), skip, true);
  EXPECT_REL_NEAR(neg.context, ref.at("pipe.negative_prompt_embeds"), 1e-4);
  EXPECT_REL_NEAR(neg.pooled, ref.at("pipe.negative_pooled_prompt_embeds"), 1e-4);
  // No negative prompt: zeros where the model forces them (base), else "" encoded (refiner).
  auto none = pipeline::request_conditioning(*model, req, "", skip, true);
  EXPECT_REL_NEAR(none.context, ref.at("pipe.negative_prompt_embeds_none"), 1e-4);
  EXPECT_REL_NEAR(none.pooled, ref.at("pipe.negative_pooled_prompt_embeds_none"), 1e-4);
  if (ref.count("pipe.negative_prompt_embeds_empty")) {
    auto empty = model->encode("", skip);  // "" given on purpose: encoded
    EXPECT_REL_NEAR(empty.context, ref.at("pipe.negative_prompt_embeds_empty"), 1e-4);
    EXPECT_REL_NEAR(empty.pooled, ref.at("pipe.negative_pooled_prompt_embeds_empty"), 1e-4);
  }
  // Time ids of a default run, and of the refiner's negative side.
  EXPECT_REL_NEAR(pos.time_ids, ref.at("pipe.add_time_ids"), 0);
  if (ref.count("pipe.add_neg_time_ids"))
    EXPECT_REL_NEAR(neg.time_ids, ref.at("pipe.add_neg_time_ids"), 0);
}

INSTANTIATE_TEST_SUITE_P(Forms, SdxlPromptGolden, testing::ValuesIn(sdxl_forms()),
                         [](const auto& i) { return test::form_test_name(i.param); });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(SdxlPromptGolden);

class SdxlRunGolden : public testing::TestWithParam<SdxlRun> {};

TEST_P(SdxlRunGolden, TrajectoryAndFinalLatentsMatch) {
  const SdxlRun& r = GetParam();
  const json& rj = r.form.reference_json;
  const json& run = rj.at("runs").at(r.key);
  auto ref = io::load_safetensors(r.form.dir + "/reference.safetensors");
  auto model = test::open_form(r.form);
  pipeline::GenerateRequest req = request_of(rj, run);
  Tensor init;
  if (r.key.rfind("img2img.", 0) == 0) {
    if (ref.count(r.key + ".image"))
      req.init_image_latents = ref.at(r.key + ".image");
    else
      req.init_image = ref.at("vae.image");
  } else {
    init = ref.at(run.at("latents").get<std::string>());
  }
  if (ref.count(r.key + ".add_time_ids")) {
    auto c = pipeline::request_conditioning(*model, req, req.prompt, model->default_clip_skip(), false);
    EXPECT_REL_NEAR(c.time_ids, ref.at(r.key + ".add_time_ids"), 0);
  }
  pipeline::validate_request(*model, req);
  const int64_t skip = model->default_clip_skip();
  const auto cond = pipeline::request_conditioning(*model, req, req.prompt, skip, false);
  const auto uncond = req.cfg_scale > 1.0f ? pipeline::request_conditioning(
                                                 *model, req, req.negative_prompt, skip, true)
                                           : pipeline::Conditioning();
  std::vector<Tensor> traj;
  Tensor out = pipeline::sample_latents(*model, req, cond, uncond, init, req.seed,
                                        [&](int, const Tensor& x) { traj.push_back(x.clone()); });
  const Tensor& want = ref.at(r.key + ".trajectory");
  ASSERT_EQ(int64_t(traj.size()), want.size(0)) << "steps";
  for (size_t i = 0; i < traj.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    EXPECT_REL_NEAR(traj[i], want.select(0, int64_t(i)).unsqueeze(0), 1e-3);
  }
  EXPECT_REL_NEAR(out, ref.at(r.key + ".final_latents"), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Runs, SdxlRunGolden, testing::ValuesIn(sdxl_runs()),
                         [](const auto& i) {
                           std::string s = test::form_test_name(i.param.form) + "_" + i.param.key;
                           for (auto& c : s)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(SdxlRunGolden);

// The whole txt2img through generate(): the euler run decoded, as diffusers' pipe.euler.image
// (latents / scaling factor through the VAE, mapped to [0, 1]); and the default size is the
// UNet config's (sample_size times the VAE's factor).
TEST(SdxlGenerate, EulerRunDecodesToTheReferenceImage) {
  const auto bases = test::reference_folders_of_kind({"sdxl"});
  if (bases.empty()) GTEST_SKIP() << "no SDXL reference model";
  for (const std::string& m : bases) {
    const test::ModelForm f = test::model_forms(m).at(0);
    auto ref = io::load_safetensors(f.dir + "/reference.safetensors");
    if (!ref.count("pipe.euler.image")) continue;
    auto model = test::open_form(f);
    EXPECT_EQ(model->family().id, "sdxl");
    EXPECT_EQ(model->default_image_size(), test::diffusers_default_side(f.path));
    pipeline::GenerateRequest req = request_of(f.reference_json, f.reference_json.at("runs").at("pipe.euler"));
    req.init_latents = ref.at("pipe.latents0");
    const auto res = pipeline::generate(*model, req);
    const Tensor& want = ref.at("pipe.euler.image");  // [1, 3, H, W] in [0, 1]
    ASSERT_EQ(res.images.size(), 1u);
    const io::Image& img = res.images[0];
    ASSERT_EQ(img.width, want.size(3));
    ASSERT_EQ(img.height, want.size(2));
    EXPECT_LE(test::max_pixel_difference(img, want), 1.0 / 255 + 1e-3) << "largest pixel difference";
  }
}

// The refiner hand-over splits one run: with the base model as its own "refiner", the base's
// noisy latents at the switch continue under the same model and give the undivided run's
// latents; with the real refiner, base and refiner steps add up to the run's.
TEST(SdxlRefiner, HandOverSplitsTheRun) {
  const auto bases = test::reference_folders_of_kind({"sdxl"});
  const auto refiners = test::reference_folders_of_kind({"sdxl-refiner"});
  if (bases.empty()) GTEST_SKIP() << "no SDXL reference model";
  const test::ModelForm base_form = test::model_forms(bases[0]).at(0);
  auto base = test::open_form(base_form);
  const json& rj = base_form.reference_json;
  pipeline::GenerateRequest req = request_of(rj, rj.at("runs").at("pipe.euler"));
  req.init_latents = io::load_safetensors(base_form.dir + "/reference.safetensors").at("pipe.latents0");
  req.steps = 8;
  std::vector<int> steps_seen;
  auto count = [&](int, int step, int) { steps_seen.push_back(step); return true; };
  const auto whole = pipeline::generate(*base, req);
  req.refiner_switch_at = 0.5;
  auto again = test::open_form(base_form);
  const auto split = pipeline::generate(*base, req, count, again.get());
  EXPECT_REL_NEAR(split.latents, whole.latents, 1e-6);
  EXPECT_EQ(steps_seen.size(), size_t(req.steps));
  if (refiners.empty()) return;
  auto refiner = test::open_form(test::model_forms(refiners[0]).at(0));
  steps_seen.clear();
  req.refiner_switch_at = 0.8;
  const auto refined = pipeline::generate(*base, req, count, refiner.get());
  EXPECT_EQ(steps_seen.size(), size_t(req.steps));
  EXPECT_GT(test::rel_error(refined.latents, whole.latents), 1e-3) << "the refiner changed nothing";
  // An SD1 model does not share SDXL's latent space: refused before any work.
  const auto sd1 = test::reference_folders_of_kind({"sd1"});
  if (!sd1.empty()) {
    auto other = test::open_form(test::model_forms(sd1[0]).at(0));
    EXPECT_THROW(pipeline::generate(*base, req, {}, other.get()), Error);
  }
}

}  // namespace
