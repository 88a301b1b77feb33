// Whole runs against diffusers: every sampler's trajectory (txt2img), img2img and inpainting,
// for every reference model, with the reference's prompts, seeds, sizes and step counts.
#include <gtest/gtest.h>

#include "io/safetensors.h"
#include "model_forms.h"
#include "pipeline/generate.h"
#include "test_util.h"

using namespace diffuse;

namespace {

struct SamplerRun {
  test::ModelForm form;
  std::string scheduler_key;  // "euler_karras"
};
void PrintTo(const SamplerRun& r, std::ostream* os) { *os << r.form.model << " " << r.scheduler_key; }

// One f32 form per model (the diffusers folder when there is one): the forms themselves are
// covered module by module elsewhere.
std::vector<SamplerRun> all_runs() {
  std::vector<SamplerRun> out;
  for (auto& m : test::reference_models()) {
    auto forms = test::model_forms(m);
    const test::ModelForm* pick = nullptr;
    for (auto& f : forms)
      if (!f.quantized() && !pick) pick = &f;
    if (!pick) continue;
    auto ref = io::load_safetensors(pick->dir + "/reference.safetensors");
    for (auto& [key, t] : ref) {
      const std::string suffix = ".final_latents";
      if (key.rfind("pipe.", 0) != 0 || key.size() <= suffix.size() ||
          key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0)
        continue;
      out.push_back({*pick, key.substr(5, key.size() - 5 - suffix.size())});
    }
  }
  return out;
}

void split_name(const std::string& key, std::string* sampler, std::string* scheduler) {
  *sampler = key;
  *scheduler = "default";
  for (const char* s : {"karras", "trailing"}) {
    std::string suf = std::string("_") + s;
    if (key.size() > suf.size() && key.compare(key.size() - suf.size(), suf.size(), suf) == 0) {
      *sampler = key.substr(0, key.size() - suf.size());
      *scheduler = s;
    }
  }
}

pipeline::GenerateRequest base_request(const nlohmann::json& rj) {
  pipeline::GenerateRequest req;
  req.prompt = rj.at("prompts")[0].get<std::string>();
  req.negative_prompt = rj.at("prompts")[1].get<std::string>();
  req.cfg_scale = rj.at("guidance_scale").get<float>();
  req.width = rj.at("width").get<int64_t>();
  req.height = rj.at("height").get<int64_t>();
  req.steps = rj.at("steps").get<int>();
  req.rng = "cpu";
  return req;
}

class SamplerGolden : public testing::TestWithParam<SamplerRun> {};

TEST_P(SamplerGolden, TrajectoryAndFinalLatentsMatch) {
  const SamplerRun& run = GetParam();
  const auto& rj = run.form.reference_json;
  auto ref = io::load_safetensors(run.form.dir + "/reference.safetensors");
  auto model = test::open_form(run.form);
  pipeline::GenerateRequest req = base_request(rj);
  split_name(run.scheduler_key, &req.sampler, &req.scheduler);
  req.seed = rj.at("pipe_generator_seed").get<int64_t>();
  Tensor init;
  if (rj.contains("inpaint")) {
    // The inpaint model's run: image + mask, latents drawn from the generator.
    req.init_image = ref.at("vae.image");
    req.mask = ref.at("inpaint.mask");
    req.strength = rj["inpaint"].at("strength").get<double>();
  } else {
    init = ref.at("pipe.latents0");
  }
  const int64_t skip = model->default_clip_skip();
  Tensor cond = model->encode_prompt(req.prompt, skip);
  Tensor uncond = model->encode_prompt(req.negative_prompt, skip);
  std::vector<Tensor> traj;
  Tensor final_latents = pipeline::sample_latents(*model, req, cond, uncond, init, req.seed,
                                                  [&](int, const Tensor& x) { traj.push_back(x.clone()); });
  const Tensor& want_traj = ref.at("pipe." + run.scheduler_key + ".trajectory");
  ASSERT_EQ(int64_t(traj.size()), want_traj.size(0)) << "model calls";
  for (size_t i = 0; i < traj.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    Tensor want = want_traj.select(0, int64_t(i)).unsqueeze(0);
    EXPECT_REL_NEAR(traj[i], want, 1e-3);
  }
  EXPECT_REL_NEAR(final_latents, ref.at("pipe." + run.scheduler_key + ".final_latents"), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Runs, SamplerGolden, testing::ValuesIn(all_runs()),
                         [](const testing::TestParamInfo<SamplerRun>& i) {
                           return test::form_test_name(i.param.form) + "_" + i.param.scheduler_key;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(SamplerGolden);

class Img2ImgGolden : public testing::TestWithParam<test::ModelForm> {};

TEST_P(Img2ImgGolden, DdimImg2ImgMatches) {
  const auto& f = GetParam();
  const auto& rj = f.reference_json;
  if (!rj.contains("img2img")) GTEST_SKIP() << f.model << " has no img2img run";
  auto ref = io::load_safetensors(f.dir + "/reference.safetensors");
  if (!ref.count("img2img.ddim.final_latents")) GTEST_SKIP() << "no img2img.ddim.final_latents";
  auto model = test::open_form(f);
  pipeline::GenerateRequest req = base_request(rj);
  req.sampler = "ddim";
  req.steps = rj["img2img"].at("steps").get<int>();
  req.strength = rj["img2img"].at("strength").get<double>();
  req.seed = rj["img2img"].at("generator_seed").get<int64_t>();
  req.init_image = ref.at("vae.image");
  const int64_t skip = model->default_clip_skip();
  Tensor out = pipeline::sample_latents(*model, req, model->encode_prompt(req.prompt, skip),
                                        model->encode_prompt(req.negative_prompt, skip), Tensor(),
                                        req.seed);
  EXPECT_REL_NEAR(out, ref.at("img2img.ddim.final_latents"), 1e-3);
}

std::vector<test::ModelForm> first_forms() {
  std::vector<test::ModelForm> out;
  for (auto& m : test::reference_models())
    for (auto& f : test::model_forms(m))
      if (!f.quantized()) {
        out.push_back(f);
        break;
      }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Models, Img2ImgGolden, testing::ValuesIn(first_forms()),
                         [](const auto& i) { return test::form_test_name(i.param); });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Img2ImgGolden);

}  // namespace
