// One diffusers scheduler: the timestep/sigma schedule plus the stepping state of one sampling
// run. Each implementation reproduces a diffusers class (src/diffusers/schedulers/
// scheduling_<name>.py) step for step, so that with the same model outputs it produces the
// same latents. samplers.h drives it in the pipeline's loop.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "sampling/rng.h"
#include "sampling/schedule.h"

namespace diffuse::sampling {

enum class SchedulerClass {
  PNDM,
  DDIM,
  DDPM,
  EulerDiscrete,
  EulerAncestralDiscrete,
  HeunDiscrete,
  LMSDiscrete,
  KDPM2Discrete,
  KDPM2AncestralDiscrete,
  DPMSolverMultistep,
  DPMSolverSinglestep,
  UniPCMultistep,
  DEISMultistep,
  LCM,
  TCD,
};

// "EulerDiscreteScheduler" <-> SchedulerClass::EulerDiscrete (diffusers' class names).
SchedulerClass scheduler_class_from_name(const std::string& diffusers_class_name);
std::string scheduler_class_name(SchedulerClass c);

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // The diffusers class this scheduler reproduces.
  SchedulerClass kind() const { return kind_; }

  // diffusers' set_timesteps(num_inference_steps): computes the schedule and resets the
  // stepping state (history, begin index).
  virtual void set_timesteps(int num_inference_steps) = 0;

  // The timesteps handed to the model, one per step() call (float32 values; integral for the
  // schedulers that use integer timesteps).
  const std::vector<float>& timesteps() const { return timesteps_; }
  // diffusers' scheduler.sigmas (float32), empty for the schedulers without one.
  const std::vector<float>& sigmas() const { return sigmas_; }
  const std::vector<float>& alphas_cumprod() const { return alphas_cumprod_; }
  // The step count of the last set_timesteps (0 before).
  int num_inference_steps() const { return num_inference_steps_; }
  virtual float init_noise_sigma() const { return 1.0f; }
  // diffusers' scheduler.order: model calls per nominal step (2 for Heun and KDPM2).
  virtual int order() const { return 1; }
  // Whether step() draws from the generator.
  virtual bool stochastic() const { return false; }
  // The noise level (as a k-diffusion sigma) the last step lands on: 0 for most, the smallest
  // training sigma for those that stop at alphas_cumprod[0] (DDIM, PNDM, DEIS, TCD with
  // set_alpha_to_one false).
  virtual float final_sigma() const = 0;
  // Noise amount for DDIM and TCD (the pipelines' `eta`); ignored by the others.
  virtual void set_eta(float /*eta*/) {}

  // img2img: the first step index to run (diffusers' set_begin_index). Call after
  // set_timesteps.
  void set_begin_index(int index);
  int begin_index() const { return begin_index_; }

  // Calls go in the pipeline's order for consecutive indices from begin_index():
  // scale_model_input(x, i), then step(model_output, i, x, gen) with the raw model output
  // (noise, v or sample prediction per the config, guidance already applied).
  virtual Tensor scale_model_input(const Tensor& sample, int step_index);
  virtual Tensor step(const Tensor& model_output, int step_index, const Tensor& sample,
                      Generator* gen) = 0;
  // Noises clean latents to the level of timesteps()[step_index] (diffusers' add_noise at
  // that timestep).
  virtual Tensor add_noise(const Tensor& original, const Tensor& noise, int step_index) const = 0;

 protected:
  // Checks that step_index is the next expected index; step() then calls advance().
  void expect_index(int step_index, const char* what) const;
  void advance() { ++cursor_; }
  void reset_cursor() { begin_index_ = 0, cursor_ = 0; }
  Generator& need_generator(Generator* gen) const;

  std::vector<float> timesteps_, sigmas_, alphas_cumprod_;
  int num_inference_steps_ = 0;

 private:
  friend std::unique_ptr<Scheduler> make_scheduler(SchedulerClass c, const SchedulerConfig& config);
  SchedulerClass kind_ = SchedulerClass::DDIM;
  int begin_index_ = 0;
  int cursor_ = 0;
};

// Creates a scheduler of the given class; unset config fields take that class's defaults.
std::unique_ptr<Scheduler> make_scheduler(SchedulerClass c, const SchedulerConfig& config);

}  // namespace diffuse::sampling
