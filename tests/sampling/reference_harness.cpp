#include "reference_harness.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "io/mmap_file.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace diffuse::test {

namespace fs = std::filesystem;

namespace {

const Tensor& need(const ReferenceModel& m, const std::string& key) {
  auto it = m.tensors.find(key);
  DF_CHECK(it != m.tensors.end(), m.dir, "/reference.safetensors: no tensor '", key, "'");
  return it->second;
}

// Step i of a stacked trajectory shaped like the latents.
Tensor trajectory_step(const Tensor& traj, int64_t i, const Shape& latents_shape) {
  // [n, c, h, w] -> [c, h, w] -> [1, c, h, w] (the reference pipelines ran batch 1)
  return traj.select(0, i).contiguous().reshape(latents_shape);
}

void expect_close(const Tensor& got, const Tensor& want, double tol) {
  EXPECT_REL_NEAR(got, want, tol);
}

}  // namespace

std::vector<std::string> reference_model_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(reference_dir(), ec)) {
    if (e.is_directory() && fs::exists(e.path() / "reference.json") &&
        fs::exists(e.path() / "reference.safetensors"))
      names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

ReferenceModel load_reference_model(const std::string& name) {
  ReferenceModel m;
  m.name = name;
  m.dir = (fs::path(reference_dir()) / name).string();
  m.info = nlohmann::json::parse(io::read_text_file(m.dir + "/reference.json"));
  m.tensors = io::load_safetensors(m.dir + "/reference.safetensors");
  return m;
}

std::vector<std::string> reference_samplers(const ReferenceModel& m) {
  std::vector<std::string> out;
  const std::string prefix = "pipe.", suffix = ".trajectory";
  for (const auto& [key, t] : m.tensors) {
    if (key.size() > prefix.size() + suffix.size() && key.rfind(prefix, 0) == 0 &&
        key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(key.substr(prefix.size(), key.size() - prefix.size() - suffix.size()));
  }
  std::sort(out.begin(), out.end());
  return out;
}

sampling::SamplerOptions reference_sampler_options(const ReferenceModel& m,
                                                   const std::string& sampler) {
  sampling::SamplerOptions o = sampling::SamplerOptions::from_name(sampler);
  o.config = sampling::parse_scheduler_config(m.info.at("scheduler_base").dump());
  o.steps = m.info.at("steps").get<int>();
  return o;
}

TrajectoryRun run_reference_sampler(const ReferenceModel& m, const std::string& sampler,
                                    const sampling::Denoiser& denoise) {
  const sampling::SamplerOptions o = reference_sampler_options(m, sampler);
  sampling::TorchCpuGenerator gen(m.info.at("pipe_generator_seed").get<uint64_t>());
  TrajectoryRun run;
  auto recording = [&](const Tensor& x, float t) {
    run.timesteps.push_back(t);
    return denoise(x, t);
  };
  run.final_latents = sampling::sample(o, need(m, "pipe.latents0"), recording, &gen,
                                       [&](int, const Tensor& x) { run.steps.push_back(x); });
  return run;
}

void expect_reference_trajectory(const ReferenceModel& m, const std::string& sampler,
                                 const sampling::Denoiser& denoise, double tol) {
  SCOPED_TRACE(m.name + " " + sampler);
  const TrajectoryRun run = run_reference_sampler(m, sampler, denoise);
  const Tensor& traj = need(m, "pipe." + sampler + ".trajectory");
  ASSERT_EQ(int64_t(run.steps.size()), traj.size(0));
  for (size_t i = 0; i < run.steps.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    Tensor want = trajectory_step(traj, int64_t(i), run.steps[i].shape());
    EXPECT_REL_NEAR(run.steps[i], want, tol);
  }
  EXPECT_REL_NEAR(run.final_latents, need(m, "pipe." + sampler + ".final_latents"), tol);
}

bool expect_reference_img2img(const ReferenceModel& m, const sampling::Denoiser& denoise,
                              double tol) {
  if (!m.info.contains("img2img")) return false;
  const auto& cfg = m.info.at("img2img");
  bool any = false;
  const std::string prefix = "img2img.", suffix = ".final_latents";
  for (const auto& [key, want] : m.tensors) {
    if (key.rfind(prefix, 0) != 0 || key.size() <= prefix.size() + suffix.size() ||
        key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string sampler =
        key.substr(prefix.size(), key.size() - prefix.size() - suffix.size());
    SCOPED_TRACE(m.name + " img2img " + sampler);
    sampling::SamplerOptions o = reference_sampler_options(m, sampler);
    o.steps = cfg.at("steps").get<int>();
    o.strength = cfg.at("strength").get<double>();
    sampling::TorchCpuGenerator gen(cfg.at("generator_seed").get<uint64_t>());
    // DiagonalGaussianDistribution.sample: mean + exp(0.5 * clamp(logvar, -30, 20)) * randn.
    const Tensor mean = need(m, "vae.encode.mean").contiguous();
    const Tensor logvar = need(m, "vae.encode.logvar").contiguous();
    const Tensor eps = gen.randn(mean.shape());
    const float scale = m.info.at("vae_scaling_factor").get<float>();
    auto mu = mean.to_float_vector(), lv = logvar.to_float_vector(), e = eps.to_float_vector();
    std::vector<float> init(mu.size());
    for (size_t k = 0; k < init.size(); ++k)
      init[k] = scale * (mu[k] + std::exp(0.5f * std::clamp(lv[k], -30.0f, 20.0f)) * e[k]);
    Tensor out = sampling::sample_img2img(o, Tensor::from_vector(init, mean.shape()), Tensor(),
                                          denoise, &gen);
    expect_close(out, want, tol);
    any = true;
  }
  return any;
}

}  // namespace diffuse::test
