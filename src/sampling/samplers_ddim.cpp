// DDIMScheduler and DDPMScheduler (diffusers scheduling_ddim.py, scheduling_ddpm.py): integer
// timesteps over alphas_cumprod, no input scaling.
#include <algorithm>
#include <cmath>

#include "sampling/scheduler_impl.h"

namespace diffuse::sampling::detail {

namespace {

// x0 and epsilon from a model output at alphas_cumprod value a (float32, as torch).
struct X0Eps {
  float x0, eps;
};
inline X0Eps split_output(PredictionType p, float x, float m, float a) {
  const float sa = std::sqrt(a), sb = std::sqrt(1.0f - a);
  switch (p) {
    case PredictionType::Epsilon:
      return {(x - sb * m) / sa, m};
    case PredictionType::VPrediction:
      return {sa * x - sb * m, sa * m + sb * x};
    case PredictionType::Sample:
      return {m, (x - sa * m) / sb};
  }
  return {0, 0};
}

constexpr ClassDefaults kDefaults{0.0001, 0.02, BetaSchedule::Linear, TimestepSpacing::Leading,
                                  true};

class DDIM : public Scheduler {
 public:
  explicit DDIM(const SchedulerConfig& cfg) : c_(resolve_common(cfg, kDefaults, "DDIMScheduler")) {
    clip_ = cfg.clip_sample.value_or(true);
    clip_range_ = float(cfg.clip_sample_range.value_or(1.0));
    final_alpha_cumprod_ = cfg.set_alpha_to_one.value_or(true) ? 1.0f : c_.alphas_cumprod[0];
    alphas_cumprod_ = c_.alphas_cumprod;
  }

  void set_timesteps(int steps) override {
    timesteps_.clear();
    for (int64_t t : discrete_timesteps(c_.spacing, c_.num_train_timesteps, steps, c_.steps_offset))
      timesteps_.push_back(float(t));
    num_inference_steps_ = steps;
    reset_cursor();
  }

  bool stochastic() const override { return eta_ > 0; }
  void set_eta(float eta) override {
    DF_CHECK(eta >= 0, "DDIM eta must be >= 0, got ", eta);
    eta_ = eta;
  }
  float final_sigma() const override {
    const float a = final_alpha_cumprod_;
    return std::sqrt((1.0f - a) / a);
  }

  Tensor step(const Tensor& model_output, int i, const Tensor& sample, Generator* gen) override {
    expect_index(i, "DDIM step");
    check_same_shape(model_output, sample, "DDIM step");
    const int64_t t = int64_t(timesteps_[size_t(i)]);
    const int64_t prev_t = t - c_.num_train_timesteps / num_inference_steps_;
    const float a_t = c_.alphas_cumprod[size_t(t)];
    const float a_prev = prev_t >= 0 ? c_.alphas_cumprod[size_t(prev_t)] : final_alpha_cumprod_;
    const float variance = (1.0f - a_prev) / (1.0f - a_t) * (1.0f - a_t / a_prev);
    const float std_dev = eta_ * std::sqrt(variance);
    const float dir_coef = std::sqrt(1.0f - a_prev - std_dev * std_dev);
    const float x0_coef = std::sqrt(a_prev);
    const float* m = f32(model_output, "DDIM model output");
    const float* x = f32(sample, "DDIM sample");
    Tensor out = map(sample, [&](int64_t k) {
      X0Eps p = split_output(c_.prediction, x[k], m[k], a_t);
      if (clip_) p.x0 = std::clamp(p.x0, -clip_range_, clip_range_);
      return x0_coef * p.x0 + dir_coef * p.eps;
    });
    if (eta_ > 0) add_fresh_noise(out, need_generator(gen), std_dev);
    advance();
    return out;
  }

  Tensor add_noise(const Tensor& original, const Tensor& noise, int i) const override {
    return add_noise_vp(original, noise, c_.alphas_cumprod[size_t(timesteps_.at(size_t(i)))]);
  }

 private:
  Common c_;
  bool clip_;
  float clip_range_, final_alpha_cumprod_;
  float eta_ = 0.0f;
};

class DDPM : public Scheduler {
 public:
  explicit DDPM(const SchedulerConfig& cfg) : c_(resolve_common(cfg, kDefaults, "DDPMScheduler")) {
    clip_ = cfg.clip_sample.value_or(true);
    clip_range_ = float(cfg.clip_sample_range.value_or(1.0));
    variance_type_ = cfg.variance_type.value_or("fixed_small");
    DF_CHECK(variance_type_ == "fixed_small" || variance_type_ == "fixed_small_log" ||
                 variance_type_ == "fixed_large",
             "DDPMScheduler: variance_type '", variance_type_,
             "' not supported (fixed_small, fixed_small_log, fixed_large)");
    alphas_cumprod_ = c_.alphas_cumprod;
  }

  void set_timesteps(int steps) override {
    timesteps_.clear();
    for (int64_t t : discrete_timesteps(c_.spacing, c_.num_train_timesteps, steps, c_.steps_offset))
      timesteps_.push_back(float(t));
    num_inference_steps_ = steps;
    reset_cursor();
  }

  bool stochastic() const override { return true; }
  float final_sigma() const override { return 0.0f; }

  Tensor step(const Tensor& model_output, int i, const Tensor& sample, Generator* gen) override {
    expect_index(i, "DDPM step");
    check_same_shape(model_output, sample, "DDPM step");
    const int64_t t = int64_t(timesteps_[size_t(i)]);
    const int64_t prev_t = previous_timestep(i);
    const float a_t = c_.alphas_cumprod[size_t(t)];
    const float a_prev = prev_t >= 0 ? c_.alphas_cumprod[size_t(prev_t)] : 1.0f;
    const float beta_t = 1.0f - a_t, beta_prev = 1.0f - a_prev;
    const float cur_alpha = a_t / a_prev, cur_beta = 1.0f - cur_alpha;
    const float x0_coef = std::sqrt(a_prev) * cur_beta / beta_t;
    const float x_coef = std::sqrt(cur_alpha) * beta_prev / beta_t;
    const float* m = f32(model_output, "DDPM model output");
    const float* x = f32(sample, "DDPM sample");
    Tensor out = map(sample, [&](int64_t k) {
      float x0 = split_output(c_.prediction, x[k], m[k], a_t).x0;
      if (clip_) x0 = std::clamp(x0, -clip_range_, clip_range_);
      return x0_coef * x0 + x_coef * x[k];
    });
    if (t > 0) {
      Generator& g = need_generator(gen);
      float variance = std::max((1.0f - a_prev) / (1.0f - a_t) * cur_beta, 1e-20f);
      float scale;
      if (variance_type_ == "fixed_small") {
        scale = std::sqrt(variance);
      } else if (variance_type_ == "fixed_small_log") {
        scale = std::exp(0.5f * std::log(variance));
      } else {  // fixed_large
        scale = std::sqrt(cur_beta);
      }
      add_fresh_noise(out, g, scale);
    }
    advance();
    return out;
  }

  Tensor add_noise(const Tensor& original, const Tensor& noise, int i) const override {
    return add_noise_vp(original, noise, c_.alphas_cumprod[size_t(timesteps_.at(size_t(i)))]);
  }

 private:
  // The next timestep of the schedule, -1 after the last.
  int64_t previous_timestep(int i) const {
    return i + 1 < int(timesteps_.size()) ? int64_t(timesteps_[size_t(i + 1)]) : -1;
  }

  Common c_;
  bool clip_;
  float clip_range_;
  std::string variance_type_;
};

}  // namespace

std::unique_ptr<Scheduler> make_ddim(const SchedulerConfig& c) {
  return std::make_unique<DDIM>(c);
}
std::unique_ptr<Scheduler> make_ddpm(const SchedulerConfig& c) {
  return std::make_unique<DDPM>(c);
}

}  // namespace diffuse::sampling::detail
