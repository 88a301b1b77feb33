// Internal to src/sampling: what the scheduler implementations share. Latents are contiguous
// f32 tensors; steps are plain elementwise loops in float, in the order torch evaluates them.
#pragma once
#include <cmath>
#include <memory>
#include <optional>
#include <vector>

#include "sampling/scheduler.h"

namespace diffuse::sampling::detail {

// The contiguous f32 data of t (checked).
const float* f32(const Tensor& t, const char* what);
// out[i] = f(i) over a new tensor shaped like `like`.
template <typename F>
Tensor map(const Tensor& like, F&& f) {
  Tensor out = Tensor::empty(like.shape());
  float* o = out.data<float>();
  const int64_t n = out.numel();
  for (int64_t i = 0; i < n; ++i) o[i] = f(i);
  return out;
}
// Checks that two tensors have the same shape.
void check_same_shape(const Tensor& a, const Tensor& b, const char* what);

// The config fields every class reads, resolved with that class's defaults.
struct Common {
  int64_t num_train_timesteps = 1000;
  std::vector<float> betas, alphas_cumprod;
  PredictionType prediction = PredictionType::Epsilon;
  TimestepSpacing spacing = TimestepSpacing::Leading;
  int64_t steps_offset = 0;
  bool rescale_zero_snr = false;
};
struct ClassDefaults {
  double beta_start = 0.0001, beta_end = 0.02;
  BetaSchedule beta_schedule = BetaSchedule::Linear;
  TimestepSpacing spacing = TimestepSpacing::Linspace;
  bool reads_rescale_zero_snr = false;  // whether the class has rescale_betas_zero_snr
};
Common resolve_common(const SchedulerConfig& c, const ClassDefaults& d, const char* class_name);

// Timesteps of the alphas_cumprod samplers (DDIM, DDPM): integers, descending.
std::vector<int64_t> discrete_timesteps(TimestepSpacing spacing, int64_t num_train, int steps,
                                        int64_t offset);
// Timesteps of the DPM-Solver family (multistep, UniPC, DEIS): steps + 1 points, last dropped.
std::vector<int64_t> solver_timesteps(TimestepSpacing spacing, int64_t num_train, int steps,
                                      int64_t offset);

// The k-diffusion schedulers' (Euler, Heun, LMS, KDPM2) timesteps and sigmas, before the final
// sigma is appended: float32 timesteps per the spacing, sigmas interpolated from the training
// sigmas, or Karras sigmas with their fractional timesteps.
struct KSchedule {
  std::vector<float> timesteps;
  std::vector<double> sigmas;
};
KSchedule k_schedule(const Common& c, int steps, bool karras, std::optional<double> sigma_min,
                     std::optional<double> sigma_max, bool round_karras_timesteps);
// (max(sigmas)^2 + 1)^0.5 for leading spacing, max(sigmas) otherwise (float32).
float k_init_noise_sigma(const std::vector<float>& sigmas, TimestepSpacing spacing);
// x0 from a k-diffusion model output at sigma (float32 scalars as torch).
inline float k_pred_x0(PredictionType p, float sample, float model_output, float sigma) {
  if (p == PredictionType::Epsilon) return sample - sigma * model_output;
  if (p == PredictionType::VPrediction)
    return model_output * (-sigma / std::sqrt(sigma * sigma + 1.0f)) +
           sample / (sigma * sigma + 1.0f);
  return model_output;
}
// VE noising original + noise * sigma.
Tensor add_noise_ve(const Tensor& original, const Tensor& noise, float sigma);
// VP noising sqrt(a) * original + sqrt(1 - a) * noise for alphas_cumprod value a.
Tensor add_noise_vp(const Tensor& original, const Tensor& noise, float alpha_cumprod);

// DPM-Solver family: alpha_t, sigma_t of a k-diffusion sigma, and lambda = log(a) - log(s).
struct AlphaSigma {
  float alpha, sigma, lambda;
};
AlphaSigma alpha_sigma(float sigma);
// Ancestral and DDPM-style steps: out += scale * noise, the noise drawn from gen in out's shape.
void add_fresh_noise(Tensor& out, Generator& gen, float scale);
// Their noising alpha_t * original + sigma_t * noise at a k-diffusion sigma.
Tensor add_noise_at_sigma(const Tensor& original, const Tensor& noise, float sigma);

void reject_unsupported(const SchedulerConfig& c, const char* class_name);

// Base of the k-diffusion schedulers (Euler, Euler ancestral, Heun, LMS, KDPM2): the sample
// lives at scale sigma (x = x0 + sigma * eps), the model sees x / sqrt(sigma^2 + 1).
class KDiffusionScheduler : public Scheduler {
 public:
  float init_noise_sigma() const override { return k_init_noise_sigma(sigmas_, c_.spacing); }
  float final_sigma() const override { return sigmas_.back(); }
  Tensor scale_model_input(const Tensor& sample, int step_index) override;
  Tensor add_noise(const Tensor& original, const Tensor& noise, int step_index) const override {
    return add_noise_ve(original, noise, sigmas_.at(size_t(step_index)));
  }

 protected:
  KDiffusionScheduler(const SchedulerConfig& cfg, const ClassDefaults& d, const char* name)
      : c_(resolve_common(cfg, d, name)) {
    alphas_cumprod_ = c_.alphas_cumprod;
  }
  // x / sqrt(sigma^2 + 1)
  static Tensor scale_by_sigma(const Tensor& sample, float sigma);

  Common c_;
};

std::unique_ptr<Scheduler> make_pndm(const SchedulerConfig& c);
std::unique_ptr<Scheduler> make_ddim(const SchedulerConfig& c);
std::unique_ptr<Scheduler> make_ddpm(const SchedulerConfig& c);
std::unique_ptr<Scheduler> make_euler(const SchedulerConfig& c);
std::unique_ptr<Scheduler> make_euler_ancestral(const SchedulerConfig& c);
std::unique_ptr<Scheduler> make_heun(const SchedulerConfig& c);
std::unique_ptr<Scheduler> make_lms(const SchedulerConfig& c);
std::unique_ptr<Scheduler> make_kdpm2(const SchedulerConfig& c, bool ancestral);
std::unique_ptr<Scheduler> make_dpm_multistep(const SchedulerConfig& c);
std::unique_ptr<Scheduler> make_dpm_singlestep(const SchedulerConfig& c);
std::unique_ptr<Scheduler> make_unipc(const SchedulerConfig& c);
std::unique_ptr<Scheduler> make_deis(const SchedulerConfig& c);
std::unique_ptr<Scheduler> make_lcm(const SchedulerConfig& c, bool tcd);

}  // namespace diffuse::sampling::detail
