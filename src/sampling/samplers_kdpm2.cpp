// KDPM2DiscreteScheduler and KDPM2AncestralDiscreteScheduler (diffusers
// scheduling_k_dpm_2_discrete.py, scheduling_k_dpm_2_ancestral_discrete.py): DPM-Solver-2 in
// k-diffusion form; each step but the last evaluates the model again at a sigma interpolated
// in log space.
#include <cmath>

#include "sampling/scheduler_impl.h"

namespace diffuse::sampling::detail {

namespace {

// torch.lerp for float32.
float torch_lerp(float start, float end, float w) {
  return w < 0.5f ? start + w * (end - start) : end - (end - start) * (1.0f - w);
}

// cat(x[:1], x[1:].repeat_interleave(2), x[-1:])
std::vector<float> interleave(const std::vector<float>& x) {
  std::vector<float> out = {x.front()};
  for (size_t j = 1; j < x.size(); ++j) out.insert(out.end(), {x[j], x[j]});
  out.push_back(x.back());
  return out;
}

class KDPM2 : public KDiffusionScheduler {
 public:
  KDPM2(const SchedulerConfig& cfg, bool ancestral)
      : KDiffusionScheduler(
            cfg, {0.00085, 0.012, BetaSchedule::Linear, TimestepSpacing::Linspace},
            ancestral ? "KDPM2AncestralDiscreteScheduler" : "KDPM2DiscreteScheduler"),
        ancestral_(ancestral),
        karras_(cfg.use_karras_sigmas.value_or(false)) {
    DF_CHECK(c_.prediction != PredictionType::Sample,
             "KDPM2 schedulers do not support prediction_type sample");
  }

  void set_timesteps(int steps) override {
    KSchedule k = k_schedule(c_, steps, karras_, std::nullopt, std::nullopt, true);
    const std::vector<float> log_sigmas = log_of(training_sigmas(c_.alphas_cumprod));
    std::vector<float> s(k.sigmas.begin(), k.sigmas.end());
    s.push_back(0.0f);
    const size_t n = s.size();  // steps + 1
    std::vector<float> interpol(n), up(n, 0.0f), down(n, 0.0f);
    if (!ancestral_) {
      // Geometric mean with the previous sigma (roll(1); entry 0 is unused).
      for (size_t j = 0; j < n; ++j)
        interpol[j] = std::exp(torch_lerp(std::log(s[j]), std::log(s[(j + n - 1) % n]), 0.5f));
    } else {
      for (size_t j = 0; j < n; ++j) {
        const float next = j + 1 < n ? s[j + 1] : 0.0f;
        up[j] = std::sqrt(next * next * (s[j] * s[j] - next * next) / (s[j] * s[j]));
        down[j] = j + 1 < n ? std::sqrt(next * next - up[j] * up[j]) : 0.0f;
        interpol[j] = std::exp(torch_lerp(std::log(s[j]), std::log(down[j]), 0.5f));
      }
      interpol[n - 2] = interpol[n - 1] = 0.0f;
    }
    sigmas_ = interleave(s);
    interpol_ = interleave(interpol);
    up_ = interleave(up);
    down_ = interleave(down);
    // Model timesteps: t0, then for each later step the interpolated one and the step's own
    // (the non-ancestral pairs the interpolation toward the previous sigma with each t_j; the
    // ancestral pairs t_j's interpolation with t_{j+1}).
    timesteps_ = {k.timesteps.front()};
    for (size_t j = 1; j < k.timesteps.size(); ++j) {
      const float ti = sigma_to_t_f32(interpol[ancestral_ ? j - 1 : j], log_sigmas);
      timesteps_.insert(timesteps_.end(), {ti, k.timesteps[j]});
    }
    num_inference_steps_ = steps;
    sample_ = Tensor();
    reset_cursor();
  }

  int order() const override { return 2; }
  bool stochastic() const override { return ancestral_; }

  Tensor scale_model_input(const Tensor& sample, int i) override {
    expect_index(i, "scale_model_input");
    float sigma = sigmas_[size_t(i)];
    if (sample_.defined()) sigma = ancestral_ ? interpol_[size_t(i) - 1] : interpol_[size_t(i)];
    return scale_by_sigma(sample, sigma);
  }

  Tensor step(const Tensor& model_output, int i, const Tensor& sample, Generator* gen) override {
    expect_index(i, "KDPM2 step");
    check_same_shape(model_output, sample, "KDPM2 step");
    const bool first = !sample_.defined();
    const size_t idx = size_t(i);
    const float sigma = first ? sigmas_[idx] : sigmas_[idx - 1];
    float sigma_interpol, dt_second;
    if (!ancestral_) {
      sigma_interpol = first ? interpol_[idx + 1] : interpol_[idx];
      dt_second = (first ? sigmas_[idx + 1] : sigmas_[idx]) - sigma;
    } else {
      sigma_interpol = first ? interpol_[idx] : interpol_[idx - 1];
      dt_second = first ? 0.0f : down_[idx - 1] - sigma;
    }
    const float sigma_input = first ? sigma : sigma_interpol;
    const float* m = f32(model_output, "KDPM2 model output");
    const float* x = f32(sample, "KDPM2 sample");
    Tensor out;
    if (first) {
      const float dt = sigma_interpol - sigma;
      out = map(sample, [&](int64_t k) {
        const float d = (x[k] - k_pred_x0(c_.prediction, x[k], m[k], sigma_input)) / sigma;
        return x[k] + d * dt;
      });
      sample_ = sample;
    } else {
      const float* x_first = sample_.data<float>();
      out = map(sample, [&](int64_t k) {
        const float d = (x[k] - k_pred_x0(c_.prediction, x[k], m[k], sigma_input)) / sigma_interpol;
        return x_first[k] + d * dt_second;
      });
      sample_ = Tensor();
      if (ancestral_) {
        add_fresh_noise(out, need_generator(gen), up_[idx - 1]);
      }
    }
    advance();
    return out;
  }

 private:
  bool ancestral_, karras_;
  std::vector<float> interpol_, up_, down_;
  Tensor sample_;  // the sample of the pending first-order half step
};

}  // namespace

std::unique_ptr<Scheduler> make_kdpm2(const SchedulerConfig& c, bool ancestral) {
  return std::make_unique<KDPM2>(c, ancestral);
}

}  // namespace diffuse::sampling::detail
