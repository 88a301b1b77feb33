#include "reference_harness.h"

#include <algorithm>
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

}  // namespace

std::vector<std::string> reference_model_names() { return reference_model_folders(); }

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

}  // namespace diffuse::test
