// DEISMultistepScheduler (diffusers scheduling_deis_multistep.py): exponential integrator in
// noise prediction, log-rho polynomial extrapolation of past outputs.
#include <cmath>

#include "sampling/scheduler_impl.h"

namespace diffuse::sampling::detail {

namespace {

class DEIS : public Scheduler {
 public:
  explicit DEIS(const SchedulerConfig& cfg)
      : c_(resolve_common(cfg, {0.0001, 0.02, BetaSchedule::Linear, TimestepSpacing::Linspace},
                          "DEISMultistepScheduler")) {
    const std::string alg = cfg.algorithm_type.value_or("deis");
    DF_CHECK(alg == "deis" || alg == "dpmsolver" || alg == "dpmsolver++",
             "DEISMultistepScheduler: algorithm_type '", alg, "' is not implemented");
    order_ = int(cfg.solver_order.value_or(2));
    DF_CHECK(order_ >= 1 && order_ <= 3, "DEISMultistepScheduler: solver_order must be 1..3");
    lower_order_final_ = cfg.lower_order_final.value_or(true);
    karras_ = cfg.use_karras_sigmas.value_or(false);
    alphas_cumprod_ = c_.alphas_cumprod;
  }

  void set_timesteps(int steps) override {
    std::vector<int64_t> ts =
        solver_timesteps(c_.spacing, c_.num_train_timesteps, steps, c_.steps_offset);
    const std::vector<float> train = training_sigmas(c_.alphas_cumprod);
    std::vector<double> sig;
    if (karras_) {
      sig = karras_sigmas(train.front(), train.back(), steps);
      const std::vector<float> log_sigmas = log_of(train);
      ts.clear();
      for (double s : sig) ts.push_back(int64_t(np_round(sigma_to_t(s, log_sigmas))));
      sig.push_back(sig.back());
    } else {
      for (int64_t t : ts) sig.push_back(interp_index(double(t), train));
      const float a0 = c_.alphas_cumprod[0];
      sig.push_back(std::sqrt((1.0f - a0) / a0));
    }
    sigmas_.assign(sig.begin(), sig.end());
    timesteps_.assign(ts.begin(), ts.end());
    num_inference_steps_ = int(ts.size());
    outputs_.assign(size_t(order_), Tensor());
    lower_order_nums_ = 0;
    reset_cursor();
  }

  float final_sigma() const override { return sigmas_.back(); }

  Tensor add_noise(const Tensor& original, const Tensor& noise, int i) const override {
    return add_noise_at_sigma(original, noise, sigmas_.at(size_t(i)));
  }

  Tensor step(const Tensor& model_output, int i, const Tensor& sample, Generator*) override {
    expect_index(i, "DEIS step");
    check_same_shape(model_output, sample, "DEIS step");
    const int n = int(timesteps_.size());
    const bool lower_final = i == n - 1 && lower_order_final_ && n < 15;
    const bool lower_second = i == n - 2 && lower_order_final_ && n < 15;
    for (size_t j = 0; j + 1 < outputs_.size(); ++j) outputs_[j] = outputs_[j + 1];
    outputs_.back() = convert(model_output, sample, i);
    Tensor out;
    if (order_ == 1 || lower_order_nums_ < 1 || lower_final) {
      out = update1(i, sample);
    } else if (order_ == 2 || lower_order_nums_ < 2 || lower_second) {
      out = update2(i, sample);
    } else {
      out = update3(i, sample);
    }
    if (lower_order_nums_ < order_) ++lower_order_nums_;
    advance();
    return out;
  }

 private:
  // Noise prediction, through x0: (x - alpha * x0) / sigma.
  Tensor convert(const Tensor& m_t, const Tensor& x_t, int i) const {
    const AlphaSigma as = alpha_sigma(sigmas_[size_t(i)]);
    const float* m = f32(m_t, "DEIS model output");
    const float* x = f32(x_t, "DEIS sample");
    const PredictionType p = c_.prediction;
    return map(x_t, [&](int64_t k) {
      float x0 = m[k];
      if (p == PredictionType::Epsilon) x0 = (x[k] - as.sigma * m[k]) / as.alpha;
      if (p == PredictionType::VPrediction) x0 = as.alpha * x[k] - as.sigma * m[k];
      return (x[k] - as.alpha * x0) / as.sigma;
    });
  }

  const float* output(int back) const {
    return outputs_[outputs_.size() - size_t(back)].data<float>();
  }
  AlphaSigma at(int idx) const { return alpha_sigma(sigmas_[size_t(idx)]); }

  Tensor update1(int i, const Tensor& x_t) const {
    const AlphaSigma t = at(i + 1), s = at(i);
    const float h = t.lambda - s.lambda;
    const float cx = t.alpha / s.alpha, cm = t.sigma * (std::exp(h) - 1.0f);
    const float* x = x_t.data<float>();
    const float* m0 = output(1);
    return map(x_t, [&](int64_t k) { return cx * x[k] - cm * m0[k]; });
  }

  Tensor update2(int i, const Tensor& x_t) const {
    const AlphaSigma t = at(i + 1), s0 = at(i), s1 = at(i - 1);
    const float rt = t.sigma / t.alpha, r0 = s0.sigma / s0.alpha, r1 = s1.sigma / s1.alpha;
    auto ind = [](float t, float b, float c) {
      return t * (-std::log(c) + std::log(t) - 1.0f) / (std::log(b) - std::log(c));
    };
    const float coef1 = ind(rt, r0, r1) - ind(r0, r0, r1);
    const float coef2 = ind(rt, r1, r0) - ind(r0, r1, r0);
    const float* x = x_t.data<float>();
    const float *m0 = output(1), *m1 = output(2);
    return map(x_t, [&](int64_t k) {
      return t.alpha * (x[k] / s0.alpha + coef1 * m0[k] + coef2 * m1[k]);
    });
  }

  Tensor update3(int i, const Tensor& x_t) const {
    const AlphaSigma t = at(i + 1), s0 = at(i), s1 = at(i - 1), s2 = at(i - 2);
    const float rt = t.sigma / t.alpha, r0 = s0.sigma / s0.alpha, r1 = s1.sigma / s1.alpha,
                r2 = s2.sigma / s2.alpha;
    auto ind = [](float t, float b, float c, float d) {
      const float lt = std::log(t), lb = std::log(b), lc = std::log(c), ld = std::log(d);
      const float num = t * (lc * (ld - lt + 1.0f) - ld * lt + ld + lt * lt - 2.0f * lt + 2.0f);
      return num / ((lb - lc) * (lb - ld));
    };
    const float coef1 = ind(rt, r0, r1, r2) - ind(r0, r0, r1, r2);
    const float coef2 = ind(rt, r1, r2, r0) - ind(r0, r1, r2, r0);
    const float coef3 = ind(rt, r2, r0, r1) - ind(r0, r2, r0, r1);
    const float* x = x_t.data<float>();
    const float *m0 = output(1), *m1 = output(2), *m2 = output(3);
    return map(x_t, [&](int64_t k) {
      return t.alpha * (x[k] / s0.alpha + coef1 * m0[k] + coef2 * m1[k] + coef3 * m2[k]);
    });
  }

  Common c_;
  int order_ = 2;
  bool lower_order_final_ = true, karras_ = false;
  std::vector<Tensor> outputs_;
  int lower_order_nums_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_deis(const SchedulerConfig& c) {
  return std::make_unique<DEIS>(c);
}

}  // namespace diffuse::sampling::detail
