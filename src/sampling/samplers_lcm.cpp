// LCMScheduler and TCDScheduler (diffusers scheduling_lcm.py, scheduling_tcd.py): consistency
// samplers over a subset of the distillation schedule's timesteps.
#include <algorithm>
#include <cmath>

#include "sampling/scheduler_impl.h"

namespace diffuse::sampling::detail {

namespace {

class LCMBase : public Scheduler {
 public:
  LCMBase(const SchedulerConfig& cfg, bool tcd)
      : c_(resolve_common(
            cfg, {0.00085, 0.012, BetaSchedule::ScaledLinear, TimestepSpacing::Leading, true},
            tcd ? "TCDScheduler" : "LCMScheduler")),
        tcd_(tcd) {
    original_steps_ = cfg.original_inference_steps.value_or(50);
    clip_ = cfg.clip_sample.value_or(false);
    clip_range_ = float(cfg.clip_sample_range.value_or(1.0));
    final_alpha_cumprod_ = cfg.set_alpha_to_one.value_or(true) ? 1.0f : c_.alphas_cumprod[0];
    timestep_scaling_ = float(cfg.timestep_scaling.value_or(10.0));
    alphas_cumprod_ = c_.alphas_cumprod;
  }

  void set_timesteps(int steps) override {
    const char* cls = tcd_ ? "TCDScheduler" : "LCMScheduler";
    const int64_t n = c_.num_train_timesteps;
    DF_CHECK(original_steps_ >= 1 && original_steps_ <= n, cls, ": original_inference_steps (",
             original_steps_, ") must be in [1, num_train_timesteps]");
    DF_CHECK(steps >= 1 && steps <= original_steps_, cls, ": number of inference steps (", steps,
             ") must be in [1, original_inference_steps = ", original_steps_, "]");
    const int64_t k = n / original_steps_;
    std::vector<int64_t> origin;  // the distillation schedule, descending
    for (int64_t j = original_steps_; j >= 1; --j) origin.push_back(j * k - 1);
    timesteps_.clear();
    for (double v : np_linspace(0, double(origin.size()), steps, /*endpoint=*/false))
      timesteps_.push_back(float(origin[size_t(std::floor(v))]));
    num_inference_steps_ = steps;
    reset_cursor();
  }

  Tensor add_noise(const Tensor& original, const Tensor& noise, int i) const override {
    return add_noise_vp(original, noise, c_.alphas_cumprod[size_t(timesteps_.at(size_t(i)))]);
  }

 protected:
  float alpha_at(int64_t t) const {
    return t >= 0 ? c_.alphas_cumprod[size_t(t)] : final_alpha_cumprod_;
  }
  // x0 from the model output at alphas_cumprod value a.
  float pred_x0(float x, float m, float a) const {
    const float sa = std::sqrt(a), sb = std::sqrt(1.0f - a);
    float x0 = m;
    if (c_.prediction == PredictionType::Epsilon) x0 = (x - sb * m) / sa;
    if (c_.prediction == PredictionType::VPrediction) x0 = sa * x - sb * m;
    return clip_ ? std::clamp(x0, -clip_range_, clip_range_) : x0;
  }

  Common c_;
  bool tcd_;
  int64_t original_steps_;
  bool clip_;
  float clip_range_, final_alpha_cumprod_, timestep_scaling_;
};

class LCM : public LCMBase {
 public:
  explicit LCM(const SchedulerConfig& cfg) : LCMBase(cfg, false) {}

  bool stochastic() const override { return true; }
  float final_sigma() const override { return 0.0f; }

  Tensor step(const Tensor& model_output, int i, const Tensor& sample, Generator* gen) override {
    expect_index(i, "LCM step");
    check_same_shape(model_output, sample, "LCM step");
    const int64_t t = int64_t(timesteps_[size_t(i)]);
    const int64_t prev_t = i + 1 < int(timesteps_.size()) ? int64_t(timesteps_[size_t(i) + 1]) : t;
    const float a_t = c_.alphas_cumprod[size_t(t)];
    const float a_prev = alpha_at(prev_t);
    // Boundary condition scalings, sigma_data = 0.5.
    const float scaled = float(t) * timestep_scaling_;
    const float c_skip = 0.25f / (scaled * scaled + 0.25f);
    const float c_out = scaled / std::sqrt(scaled * scaled + 0.25f);
    const float* m = f32(model_output, "LCM model output");
    const float* x = f32(sample, "LCM sample");
    Tensor denoised =
        map(sample, [&](int64_t k) { return c_out * pred_x0(x[k], m[k], a_t) + c_skip * x[k]; });
    if (i != num_inference_steps_ - 1) {
      Tensor noise = need_generator(gen).randn(sample.shape());
      const float* d = denoised.data<float>();
      const float* e = noise.data<float>();
      const float ca = std::sqrt(a_prev), cb = std::sqrt(1.0f - a_prev);
      denoised = map(sample, [&](int64_t k) { return ca * d[k] + cb * e[k]; });
    }
    advance();
    return denoised;
  }
};

class TCD : public LCMBase {
 public:
  explicit TCD(const SchedulerConfig& cfg) : LCMBase(cfg, true) {}

  // The class's own default is 0.3, but the Stable Diffusion pipelines pass their `eta`
  // argument (default 0) to every scheduler whose step() takes one.
  void set_eta(float eta) override {
    DF_CHECK(eta >= 0 && eta <= 1, "TCD eta (gamma) must be in [0, 1], got ", eta);
    eta_ = eta;
  }
  bool stochastic() const override { return eta_ > 0; }
  float final_sigma() const override {
    const float a = c_.alphas_cumprod[0];
    return std::sqrt((1.0f - a) / a);
  }

  Tensor step(const Tensor& model_output, int i, const Tensor& sample, Generator* gen) override {
    expect_index(i, "TCD step");
    check_same_shape(model_output, sample, "TCD step");
    const int64_t t = int64_t(timesteps_[size_t(i)]);
    const int64_t prev_t = i + 1 < int(timesteps_.size()) ? int64_t(timesteps_[size_t(i) + 1]) : 0;
    const int64_t s = int64_t(std::floor(float(1.0 - double(eta_)) * float(prev_t)));
    const float a_t = c_.alphas_cumprod[size_t(t)];
    const float a_prev = alpha_at(prev_t);
    const float a_s = c_.alphas_cumprod[size_t(s)];
    const float sa_t = std::sqrt(a_t), sb_t = std::sqrt(1.0f - a_t);
    const float sa_s = std::sqrt(a_s), sb_s = std::sqrt(1.0f - a_s);
    const float* m = f32(model_output, "TCD model output");
    const float* x = f32(sample, "TCD sample");
    const PredictionType p = c_.prediction;
    Tensor noised = map(sample, [&](int64_t k) {
      float x0, eps;
      if (p == PredictionType::Epsilon) {
        x0 = (x[k] - sb_t * m[k]) / sa_t, eps = m[k];
      } else if (p == PredictionType::VPrediction) {
        x0 = sa_t * x[k] - sb_t * m[k], eps = sa_t * m[k] + sb_t * x[k];
      } else {
        x0 = m[k], eps = (x[k] - sa_t * x0) / sb_t;
      }
      return sa_s * x0 + sb_s * eps;
    });
    if (eta_ > 0 && i != num_inference_steps_ - 1) {
      Tensor noise = need_generator(gen).randn(sample.shape());
      const float* d = noised.data<float>();
      const float* e = noise.data<float>();
      const float r = a_prev / a_s;
      const float ca = std::sqrt(r), cb = std::sqrt(1.0f - r);
      noised = map(sample, [&](int64_t k) { return ca * d[k] + cb * e[k]; });
    }
    advance();
    return noised;
  }

 private:
  float eta_ = 0.0f;
};

}  // namespace

std::unique_ptr<Scheduler> make_lcm(const SchedulerConfig& c, bool tcd) {
  if (tcd) return std::make_unique<TCD>(c);
  return std::make_unique<LCM>(c);
}

}  // namespace diffuse::sampling::detail
