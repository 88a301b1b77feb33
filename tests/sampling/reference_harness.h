// Runs the samplers the way the reference pipelines ran (reference/<model>/reference.json and
// reference.safetensors) with any denoiser, recording every step for comparison with the
// recorded latents (pipe.S.trajectory, pipe.S.final_latents):
//
//   auto m = test::load_reference_model("sd1-tiny");
//   for (const auto& s : test::reference_samplers(m))
//     const auto run = test::run_reference_sampler(m, s, my_denoiser);
//
// To reproduce the recorded latents the denoiser must return what the pipeline's UNet + CFG
// returned: uncond + guidance_scale * (cond - uncond) with pipe.negative_prompt_embeds /
// pipe.prompt_embeds and reference.json's guidance_scale.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "io/tensor_map.h"
#include "sampling/samplers.h"

namespace diffuse::test {

struct ReferenceModel {
  std::string name;       // folder name, e.g. "sd1-tiny"
  std::string dir;        // its path
  nlohmann::json info;    // reference.json
  io::TensorMap tensors;  // reference.safetensors
};

// Folders of the reference dir that hold reference.json and reference.safetensors, sorted.
std::vector<std::string> reference_model_names();
ReferenceModel load_reference_model(const std::string& name);

// The samplers S with a pipe.S.trajectory in the model's reference, sorted.
std::vector<std::string> reference_samplers(const ReferenceModel& m);
// The options of the reference run of S: scheduler_base as the config, reference steps.
sampling::SamplerOptions reference_sampler_options(const ReferenceModel& m,
                                                   const std::string& sampler);

struct TrajectoryRun {
  std::vector<Tensor> steps;     // latents after each step
  std::vector<float> timesteps;  // the timesteps the denoiser was called with
  Tensor final_latents;
};
// txt2img from pipe.latents0, stochastic noise from a CPU generator seeded with
// reference.json:pipe_generator_seed, as in the reference pipeline.
TrajectoryRun run_reference_sampler(const ReferenceModel& m, const std::string& sampler,
                                    const sampling::Denoiser& denoise);

}  // namespace diffuse::test
