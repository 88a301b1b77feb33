// EulerDiscreteScheduler and EulerAncestralDiscreteScheduler (diffusers
// scheduling_euler_discrete.py, scheduling_euler_ancestral_discrete.py).
#include <cmath>

#include "sampling/scheduler_impl.h"

namespace diffuse::sampling::detail {

namespace {

constexpr ClassDefaults kDefaults{0.0001, 0.02, BetaSchedule::Linear, TimestepSpacing::Linspace,
                                  true};

class Euler : public KDiffusionScheduler {
 public:
  explicit Euler(const SchedulerConfig& cfg)
      : KDiffusionScheduler(cfg, kDefaults, "EulerDiscreteScheduler"),
        karras_(cfg.use_karras_sigmas.value_or(false)),
        sigma_min_(cfg.sigma_min),
        sigma_max_(cfg.sigma_max) {
    const std::string final_type = cfg.final_sigmas_type.value_or("zero");
    DF_CHECK(final_type == "zero" || final_type == "sigma_min",
             "EulerDiscreteScheduler: final_sigmas_type must be zero or sigma_min, got ",
             final_type);
    final_sigma_min_ = final_type == "sigma_min";
    if (c_.rescale_zero_snr) c_.alphas_cumprod.back() = std::ldexp(1.0f, -24);
    alphas_cumprod_ = c_.alphas_cumprod;
  }

  void set_timesteps(int steps) override {
    KSchedule k = k_schedule(c_, steps, karras_, sigma_min_, sigma_max_, false);
    timesteps_ = k.timesteps;
    sigmas_.assign(k.sigmas.begin(), k.sigmas.end());
    const float a0 = c_.alphas_cumprod[0];
    sigmas_.push_back(final_sigma_min_ ? std::sqrt((1.0f - a0) / a0) : 0.0f);
    num_inference_steps_ = steps;
    reset_cursor();
  }

  Tensor step(const Tensor& model_output, int i, const Tensor& sample, Generator*) override {
    expect_index(i, "Euler step");
    check_same_shape(model_output, sample, "Euler step");
    const float sigma = sigmas_[size_t(i)];  // s_churn = 0: sigma_hat = sigma
    const float dt = sigmas_[size_t(i) + 1] - sigma;
    const float* m = f32(model_output, "Euler model output");
    const float* x = f32(sample, "Euler sample");
    Tensor out = map(sample, [&](int64_t k) {
      const float x0 = k_pred_x0(c_.prediction, x[k], m[k], sigma);
      const float derivative = (x[k] - x0) / sigma;
      return x[k] + derivative * dt;
    });
    advance();
    return out;
  }

 private:
  bool karras_;
  bool final_sigma_min_ = false;
  std::optional<double> sigma_min_, sigma_max_;
};

class EulerAncestral : public KDiffusionScheduler {
 public:
  explicit EulerAncestral(const SchedulerConfig& cfg)
      : KDiffusionScheduler(cfg, kDefaults, "EulerAncestralDiscreteScheduler") {
    DF_CHECK(c_.prediction != PredictionType::Sample,
             "EulerAncestralDiscreteScheduler does not support prediction_type sample");
    if (c_.rescale_zero_snr) c_.alphas_cumprod.back() = std::ldexp(1.0f, -24);
    alphas_cumprod_ = c_.alphas_cumprod;
  }

  void set_timesteps(int steps) override {
    KSchedule k = k_schedule(c_, steps, false, std::nullopt, std::nullopt, false);
    timesteps_ = k.timesteps;
    sigmas_.assign(k.sigmas.begin(), k.sigmas.end());
    sigmas_.push_back(0.0f);
    num_inference_steps_ = steps;
    reset_cursor();
  }

  bool stochastic() const override { return true; }

  Tensor step(const Tensor& model_output, int i, const Tensor& sample, Generator* gen) override {
    expect_index(i, "Euler ancestral step");
    check_same_shape(model_output, sample, "Euler ancestral step");
    const float sigma = sigmas_[size_t(i)];
    const float to = sigmas_[size_t(i) + 1];
    const float sigma_up = std::sqrt(to * to * (sigma * sigma - to * to) / (sigma * sigma));
    const float sigma_down = std::sqrt(to * to - sigma_up * sigma_up);
    const float dt = sigma_down - sigma;
    const float* m = f32(model_output, "Euler ancestral model output");
    const float* x = f32(sample, "Euler ancestral sample");
    // The noise is drawn after the deterministic part, on every step (also the last).
    Tensor out = map(sample, [&](int64_t k) {
      const float x0 = k_pred_x0(c_.prediction, x[k], m[k], sigma);
      const float derivative = (x[k] - x0) / sigma;
      return x[k] + derivative * dt;
    });
    add_fresh_noise(out, need_generator(gen), sigma_up);
    advance();
    return out;
  }
};

}  // namespace

std::unique_ptr<Scheduler> make_euler(const SchedulerConfig& c) {
  return std::make_unique<Euler>(c);
}
std::unique_ptr<Scheduler> make_euler_ancestral(const SchedulerConfig& c) {
  return std::make_unique<EulerAncestral>(c);
}

}  // namespace diffuse::sampling::detail
