// Whole runs against diffusers: every sampler's trajectory (txt2img), img2img and inpainting,
// for every reference model, with the reference's prompts, seeds, sizes and step counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "io/safetensors.h"
#include "model_forms.h"
#include "ops/ops.h"
#include "pipeline/generate.h"
#include "pipeline/image_tensor.h"
#include "sampling/rng.h"
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
  const auto cond = pipeline::request_conditioning(*model, req, req.prompt, skip, false);
  const auto uncond = pipeline::request_conditioning(*model, req, req.negative_prompt, skip, true);
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
  Tensor out = pipeline::sample_latents(*model, req, pipeline::request_conditioning(*model, req, req.prompt, skip, false),
                                        pipeline::request_conditioning(*model, req, req.negative_prompt, skip, true), Tensor(),
                                        req.seed);
  EXPECT_REL_NEAR(out, ref.at("img2img.ddim.final_latents"), 1e-3);
}

// pipe.ddim.image: the DDIM run's latents through the VAE and diffusers' postprocessing.
TEST_P(Img2ImgGolden, DdimImageDecodes) {
  const auto& f = GetParam();
  auto ref = io::load_safetensors(f.dir + "/reference.safetensors");
  if (!ref.count("pipe.ddim.image")) GTEST_SKIP() << "no pipe.ddim.image";
  auto model = test::open_form(f);
  Tensor lat = ops::scale(ref.at("pipe.ddim.final_latents"), 1.0f / model->vae_config.scaling_factor);
  Tensor img = model->vae().decode(lat);
  // (x / 2 + 0.5) clamped to [0, 1]
  Tensor unit = ops::add_scalar(ops::scale(img, 0.5f), 0.5f).contiguous();
  float* p = unit.data<float>();
  for (int64_t i = 0; i < unit.numel(); ++i) p[i] = std::min(1.0f, std::max(0.0f, p[i]));
  const Tensor& want = ref.at("pipe.ddim.image");
  // diffusers may return it channels-last ([B, H, W, C]) or channels-first.
  Tensor got = want.dim() == 4 && want.size(3) == 3 && unit.size(1) == 3 ? unit.permute({0, 2, 3, 1}) : unit;
  EXPECT_REL_NEAR(got.contiguous(), want, 1e-3);
  // And the same through the 8-bit images the CLI writes: within one step of rounding.
  auto imgs = pipeline::tensor_to_images(img);
  Tensor w = want.dim() == 4 && want.size(3) == 3 ? want : want.permute({0, 2, 3, 1});
  auto wv = w.contiguous().to_float_vector();
  ASSERT_EQ(wv.size(), imgs[0].pixels.size());
  for (size_t i = 0; i < wv.size(); ++i) ASSERT_NEAR(imgs[0].pixels[i], wv[i] * 255.0f, 1.01f) << i;
}

// Masked img2img with an ordinary model: the kept region ends as the image's own latents and
// the repainted region changes.
TEST_P(Img2ImgGolden, MaskedImg2ImgKeepsTheUnmaskedRegion) {
  const auto& f = GetParam();
  auto ref = io::load_safetensors(f.dir + "/reference.safetensors");
  auto model = test::open_form(f);
  if (model->inpaint) GTEST_SKIP() << "an inpainting model";
  pipeline::GenerateRequest req = base_request(f.reference_json);
  req.sampler = "ddim";
  req.steps = 4;
  req.seed = 3;
  req.strength = 0.75;
  req.init_image = ref.at("vae.image");
  const int64_t h = req.init_image.size(2), w = req.init_image.size(3);
  std::vector<float> m(size_t(h * w));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) m[size_t(y * w + x)] = x >= w / 2 ? 1.0f : 0.0f;  // repaint right
  req.mask = Tensor::from_vector(m, {1, 1, h, w});
  const int64_t skip = model->default_clip_skip();
  Tensor out = pipeline::sample_latents(*model, req, pipeline::request_conditioning(*model, req, req.prompt, skip, false),
                                        pipeline::request_conditioning(*model, req, req.negative_prompt, skip, true), Tensor(), req.seed);
  // The image latents as the pipeline drew them: the posterior sample is the generator's first draw.
  auto d = model->vae().encode(req.init_image);
  auto gen = sampling::make_generator("cpu", uint64_t(req.seed));
  Tensor noise = gen->randn(d.mean.shape());
  Tensor stdev = ops::scale(d.logvar, 0.5f).contiguous();
  float* sp = stdev.data<float>();
  for (int64_t i = 0; i < stdev.numel(); ++i) sp[i] = std::exp(sp[i]);
  Tensor image_latents = ops::scale(ops::add(d.mean, ops::mul(stdev, noise)), model->vae_config.scaling_factor);
  const int64_t lw = out.size(3);
  Tensor kept = out.slice(3, 0, lw / 2).contiguous(), want = image_latents.slice(3, 0, lw / 2).contiguous();
  EXPECT_REL_NEAR(kept, want, 1e-5);
  Tensor painted = out.slice(3, lw / 2, lw).contiguous(), orig = image_latents.slice(3, lw / 2, lw).contiguous();
  EXPECT_GT(test::rel_error(painted, orig), 1e-2);
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
