// Samplers: the diffusers pipeline loop over a scheduler, driven by a denoiser callback, so a
// sampler never sees a model. For txt2img:
//   latents = latents_init * init_noise_sigma
//   for each timestep t: out = denoise(scale_model_input(latents, t), t)
//                        latents = step(out, t, latents)      -> on_step(i, latents)
// which reproduces diffusers' StableDiffusionPipeline with the same scheduler, step for step.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "sampling/rng.h"
#include "sampling/schedule.h"
#include "sampling/scheduler.h"

namespace diffuse::sampling {

// The model as a sampler sees it: the raw output (noise, v or sample prediction as the config
// says; classifier-free guidance already applied) for an already scaled input at a timestep.
using Denoiser = std::function<Tensor(const Tensor& model_input, float timestep)>;
// Called after each scheduler step with the loop index (0-based, counting model calls) and the
// latents after that step.
using StepCallback = std::function<void(int step, const Tensor& latents)>;

// Called after each scheduler step with the scheduler, the step's index into its timesteps and
// the latents; returns the latents the run continues from (masked img2img puts the kept region
// back, noised to the next step's level). Runs before the StepCallback.
using StepFilter = std::function<Tensor(const Scheduler& scheduler, int index, const Tensor& latents)>;

// default: the scheduler's own sigmas; karras: Karras et al. sigmas (use_karras_sigmas);
// trailing: timestep_spacing "trailing".
enum class NoiseSchedule { Default, Karras, Trailing };

struct SamplerOptions {
  // One of sampler_names(): pndm, ddim, ddpm, euler, euler_a, heun, lms, dpm2, dpm2_a, dpmpp_2m,
  // dpmpp_2m_sde, dpmpp_2s, unipc, deis, lcm, tcd.
  std::string name = "euler";
  NoiseSchedule scheduler = NoiseSchedule::Default;
  int steps = 20;
  // Overrides config.prediction_type when set (epsilon for SD 1.x, v_prediction for SD 2.x 768).
  std::optional<PredictionType> prediction_type;
  // The model's scheduler config (scheduler_config.json); the sampler's class defaults fill the
  // rest, as when diffusers builds a scheduler from a model's config.
  SchedulerConfig config = SchedulerConfig::stable_diffusion();
  // DDIM / TCD noise; diffusers' pipelines pass eta = 0 unless asked.
  float eta = 0.0f;
  // img2img: the fraction of the schedule that is run (diffusers' `strength`; a double, as
  // int(steps * strength) must truncate like Python's).
  double strength = 1.0;
  // A run split between two models (the SDXL refiner hand-over, diffusers' denoising_end and
  // denoising_start, fractions of the training timesteps T): a txt2img run stops before the
  // first timestep below round((1 - denoising_end) * T), returning noisy latents; an img2img run
  // with denoising_start > 0 starts at the first timestep below round((1 - denoising_start) * T)
  // from the latents as given (already noisy: nothing is added, strength is not used).
  double denoising_end = 1.0;
  double denoising_start = 0.0;

  // "dpmpp_2m_karras", "ddim_trailing", "euler_a": a sampler name with an optional
  // _karras / _trailing suffix. Other fields keep their defaults.
  static SamplerOptions from_name(const std::string& name_with_schedule);
  // The inverse: name plus suffix.
  std::string full_name() const;
};

const std::vector<std::string>& sampler_names();

// The diffusers class and config behind the options (e.g. dpmpp_2m_sde -> DPMSolverMultistep
// with algorithm_type sde-dpmsolver++), set_eta applied; set_timesteps is left to the caller.
SchedulerClass sampler_class(const SamplerOptions& options);
SchedulerConfig sampler_config(const SamplerOptions& options);
std::unique_ptr<Scheduler> make_scheduler(const SamplerOptions& options);

// txt2img: runs all steps from latents_init (unit-variance noise). gen supplies the
// stochastic samplers' per-step noise (may be null for deterministic ones).
Tensor sample(const SamplerOptions& options, const Tensor& latents_init, const Denoiser& denoise,
              Generator* gen, const StepCallback& on_step = {}, const StepFilter& filter = {});

// The same loop on a scheduler made elsewhere (e.g. make_scheduler(class, config) from a
// model's scheduler_config.json); set_timesteps must have been called.
Tensor sample(Scheduler& scheduler, const Tensor& latents_init, const Denoiser& denoise,
              Generator* gen, const StepCallback& on_step = {});

// img2img, as diffusers' img2img pipeline: with n = options.steps, the last
// min(int(n * strength), n) steps run, starting from init_latents noised to the first of them.
// The number of scheduler indices a txt2img run with this denoising_end takes (all when 1).
int denoising_end_index(const Scheduler& scheduler, double denoising_end);
// The first scheduler index an img2img run with this denoising_start takes.
int denoising_start_index(const Scheduler& scheduler, double denoising_start);

struct Img2ImgPlan {
  int begin_index = 0;  // first index into the scheduler's timesteps (t_start * order)
  int num_steps = 0;    // nominal steps that run (n - t_start)
  float timestep = 0;   // the timestep the latents are noised to
};
Img2ImgPlan img2img_plan(const Scheduler& scheduler, int steps, double strength);

// noise: the latent-shaped noise to add; when undefined it is drawn from gen (the pipeline
// draws it right after the VAE posterior sample).
Tensor sample_img2img(const SamplerOptions& options, const Tensor& init_latents,
                      const Tensor& noise, const Denoiser& denoise, Generator* gen,
                      const StepCallback& on_step = {}, const StepFilter& filter = {});
// The same on a scheduler made elsewhere, after its set_timesteps (which gives the step count).
Tensor sample_img2img(Scheduler& scheduler, double strength, const Tensor& init_latents,
                      const Tensor& noise, const Denoiser& denoise, Generator* gen,
                      const StepCallback& on_step = {}, const StepFilter& filter = {});

}  // namespace diffuse::sampling
