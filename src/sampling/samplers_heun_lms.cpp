// HeunDiscreteScheduler and LMSDiscreteScheduler (diffusers scheduling_heun_discrete.py,
// scheduling_lms_discrete.py).
#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <optional>

#include "sampling/scheduler_impl.h"

namespace diffuse::sampling::detail {

namespace {

// Heun: every step but the first evaluates the model twice (an Euler step, then the average of
// both slopes), so the schedule repeats each inner timestep.
class Heun : public KDiffusionScheduler {
 public:
  explicit Heun(const SchedulerConfig& cfg)
      : KDiffusionScheduler(cfg, {0.00085, 0.012, BetaSchedule::Linear, TimestepSpacing::Linspace},
                            "HeunDiscreteScheduler"),
        karras_(cfg.use_karras_sigmas.value_or(false)),
        clip_(cfg.clip_sample.value_or(false)),
        clip_range_(float(cfg.clip_sample_range.value_or(1.0))) {}

  void set_timesteps(int steps) override {
    KSchedule k = k_schedule(c_, steps, karras_, std::nullopt, std::nullopt, false);
    std::vector<float> s(k.sigmas.begin(), k.sigmas.end());
    s.push_back(0.0f);
    // sigmas: s0, s1, s1, ..., s_{n-1}, s_{n-1}, 0; timesteps: t0, t1, t1, ..., t_{n-1}, t_{n-1}
    sigmas_ = {s.front()};
    for (size_t j = 1; j + 1 < s.size(); ++j) sigmas_.insert(sigmas_.end(), {s[j], s[j]});
    sigmas_.push_back(s.back());
    timesteps_ = {k.timesteps.front()};
    for (size_t j = 1; j < k.timesteps.size(); ++j)
      timesteps_.insert(timesteps_.end(), {k.timesteps[j], k.timesteps[j]});
    num_inference_steps_ = steps;
    dt_.reset();
    reset_cursor();
  }

  int order() const override { return 2; }

  Tensor step(const Tensor& model_output, int i, const Tensor& sample, Generator*) override {
    expect_index(i, "Heun step");
    check_same_shape(model_output, sample, "Heun step");
    const bool first = !dt_.has_value();
    const float sigma = first ? sigmas_[size_t(i)] : sigmas_[size_t(i) - 1];
    const float sigma_next = first ? sigmas_[size_t(i) + 1] : sigmas_[size_t(i)];
    const float sigma_input = first ? sigma : sigma_next;
    const float* m = f32(model_output, "Heun model output");
    const float* x = f32(sample, "Heun sample");
    auto x0_at = [&](int64_t k) {
      float x0 = k_pred_x0(c_.prediction, x[k], m[k], sigma_input);
      return clip_ ? std::clamp(x0, -clip_range_, clip_range_) : x0;
    };
    Tensor out;
    if (first) {
      const float dt = sigma_next - sigma;
      prev_derivative_ = map(sample, [&](int64_t k) { return (x[k] - x0_at(k)) / sigma; });
      const float* d = prev_derivative_.data<float>();
      out = map(sample, [&](int64_t k) { return x[k] + d[k] * dt; });
      dt_ = dt;
      sample_ = sample;
    } else {
      const float* pd = prev_derivative_.data<float>();
      const float* x_first = sample_.data<float>();
      const float dt = *dt_;
      out = map(sample, [&](int64_t k) {
        const float d = (pd[k] + (x[k] - x0_at(k)) / sigma_next) / 2.0f;
        return x_first[k] + d * dt;
      });
      dt_.reset();
      prev_derivative_ = Tensor();
      sample_ = Tensor();
    }
    advance();
    return out;
  }

 private:
  bool karras_, clip_;
  float clip_range_;
  std::optional<float> dt_;
  Tensor prev_derivative_, sample_;
};

// LMS: linear multistep over up to 4 past derivatives, the coefficients integrating the
// Lagrange basis polynomials over [sigma_i, sigma_{i+1}].
class LMS : public KDiffusionScheduler {
 public:
  explicit LMS(const SchedulerConfig& cfg)
      : KDiffusionScheduler(cfg, {0.0001, 0.02, BetaSchedule::Linear, TimestepSpacing::Linspace},
                            "LMSDiscreteScheduler"),
        karras_(cfg.use_karras_sigmas.value_or(false)) {}

  void set_timesteps(int steps) override {
    KSchedule k = k_schedule(c_, steps, karras_, std::nullopt, std::nullopt, false);
    timesteps_ = k.timesteps;
    sigmas_.assign(k.sigmas.begin(), k.sigmas.end());
    sigmas_.push_back(0.0f);
    num_inference_steps_ = steps;
    derivatives_.clear();
    reset_cursor();
  }

  Tensor step(const Tensor& model_output, int i, const Tensor& sample, Generator*) override {
    expect_index(i, "LMS step");
    check_same_shape(model_output, sample, "LMS step");
    constexpr int kOrder = 4;
    const float sigma = sigmas_[size_t(i)];
    const float* m = f32(model_output, "LMS model output");
    const float* x = f32(sample, "LMS sample");
    derivatives_.push_back(map(sample, [&](int64_t k) {
      return (x[k] - k_pred_x0(c_.prediction, x[k], m[k], sigma)) / sigma;
    }));
    if (derivatives_.size() > size_t(kOrder)) derivatives_.pop_front();
    const int order = std::min(i + 1, kOrder);
    // zip(coeffs, reversed(derivatives)): as many terms as the shorter of the two.
    const size_t terms = std::min(size_t(order), derivatives_.size());
    std::vector<float> coeffs;
    for (size_t j = 0; j < terms; ++j) coeffs.push_back(float(lms_coefficient(order, i, int(j))));
    Tensor acc;
    for (size_t j = 0; j < terms; ++j) {
      const float* d = derivatives_[derivatives_.size() - 1 - j].data<float>();
      const float c = coeffs[j];
      if (j == 0) {
        acc = map(sample, [&](int64_t k) { return c * d[k]; });
      } else {
        float* a = acc.data<float>();
        for (int64_t k = 0; k < acc.numel(); ++k) a[k] = a[k] + c * d[k];
      }
    }
    const float* a = acc.data<float>();
    Tensor out = map(sample, [&](int64_t k) { return x[k] + a[k]; });
    advance();
    return out;
  }

 private:
  // The integral over [sigma_t, sigma_{t+1}] of the Lagrange basis polynomial for
  // sigma_{t - current} among sigma_t .. sigma_{t - order + 1}. It has degree < 4, so 3-point
  // Gauss-Legendre is exact (diffusers uses scipy's adaptive quadrature, equal to rounding).
  double lms_coefficient(int order, int t, int current) const {
    auto s = [&](int idx) { return double(sigmas_[size_t(idx)]); };
    auto basis = [&](double tau) {
      double prod = 1.0;
      for (int k = 0; k < order; ++k) {
        if (k == current) continue;
        prod *= (tau - s(t - k)) / (s(t - current) - s(t - k));
      }
      return prod;
    };
    const double a = s(t), b = s(t + 1);
    const double half = (b - a) / 2, mid = (a + b) / 2;
    const std::array<double, 3> nodes = {-std::sqrt(0.6), 0.0, std::sqrt(0.6)};
    const std::array<double, 3> weights = {5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0};
    double sum = 0;
    for (int q = 0; q < 3; ++q) sum += weights[size_t(q)] * basis(mid + half * nodes[size_t(q)]);
    return sum * half;
  }

  bool karras_;
  std::deque<Tensor> derivatives_;
};

}  // namespace

std::unique_ptr<Scheduler> make_heun(const SchedulerConfig& c) {
  return std::make_unique<Heun>(c);
}
std::unique_ptr<Scheduler> make_lms(const SchedulerConfig& c) {
  return std::make_unique<LMS>(c);
}

}  // namespace diffuse::sampling::detail
