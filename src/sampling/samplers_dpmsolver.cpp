// DPMSolverMultistepScheduler and DPMSolverSinglestepScheduler (diffusers
// scheduling_dpmsolver_multistep.py, scheduling_dpmsolver_singlestep.py): DPM-Solver(++) and its
// SDE variants, in the data-prediction (x0) or noise-prediction form, on alpha-scaled samples.
#include <cmath>
#include <optional>
#include <tuple>
#include <utility>

#include "sampling/scheduler_impl.h"

namespace diffuse::sampling::detail {

namespace {

enum class Algorithm { DPMSolverPP, SDEDPMSolverPP, DPMSolver, SDEDPMSolver };

Algorithm parse_algorithm(const std::string& s, const char* cls) {
  if (s == "dpmsolver++" || s == "deis") return Algorithm::DPMSolverPP;  // diffusers maps deis
  if (s == "sde-dpmsolver++") return Algorithm::SDEDPMSolverPP;
  if (s == "dpmsolver") return Algorithm::DPMSolver;
  if (s == "sde-dpmsolver") return Algorithm::SDEDPMSolver;
  DF_FAIL(cls, ": unknown algorithm_type '", s, "'");
}

bool is_sde(Algorithm a) {
  return a == Algorithm::SDEDPMSolverPP || a == Algorithm::SDEDPMSolver;
}
bool predicts_x0(Algorithm a) {
  return a == Algorithm::DPMSolverPP || a == Algorithm::SDEDPMSolverPP;
}

// Scalar coefficients of one update: x_t = cx * x + c[0] * D0 + c[1] * D1 + c[2] * D2 + cn * noise.
struct Coefs {
  float cx = 0, c[3] = {0, 0, 0}, cn = 0;
};

// The step's target noise level (alpha_t, sigma_t) and its log-SNR length h. The update
// functions take sigma_ratio = sigma_t / sigma_s and alpha_ratio = alpha_t / alpha_s, where s is
// the noise level of the sample being updated.
struct Ts {
  float alpha_t, sigma_t, h;
};

// First-order DPM-Solver(++) coefficients for a step of log-SNR length h.
Coefs first_order(Algorithm a, const Ts& t, float sigma_ratio, float alpha_ratio) {
  Coefs r;
  const float h = t.h;
  switch (a) {
    case Algorithm::DPMSolverPP:
      r.cx = sigma_ratio;
      r.c[0] = -(t.alpha_t * (std::exp(-h) - 1.0f));
      break;
    case Algorithm::DPMSolver:
      r.cx = alpha_ratio;
      r.c[0] = -(t.sigma_t * (std::exp(h) - 1.0f));
      break;
    case Algorithm::SDEDPMSolverPP:
      r.cx = sigma_ratio * std::exp(-h);
      r.c[0] = t.alpha_t * (1.0f - std::exp(-2.0f * h));
      r.cn = t.sigma_t * std::sqrt(1.0f - std::exp(-2.0f * h));
      break;
    case Algorithm::SDEDPMSolver:
      r.cx = alpha_ratio;
      r.c[0] = -(2.0f * (t.sigma_t * (std::exp(h) - 1.0f)));
      r.cn = t.sigma_t * std::sqrt(std::exp(2.0f * h) - 1.0f);
      break;
  }
  return r;
}

// The D1 coefficient of the second-order update (midpoint or heun).
float second_order_d1(Algorithm a, bool heun, const Ts& t) {
  const float h = t.h, at = t.alpha_t, st = t.sigma_t;
  switch (a) {
    case Algorithm::DPMSolverPP:
      return heun ? at * ((std::exp(-h) - 1.0f) / h + 1.0f)
                  : -(0.5f * (at * (std::exp(-h) - 1.0f)));
    case Algorithm::DPMSolver:
      return heun ? -(st * ((std::exp(h) - 1.0f) / h - 1.0f))
                  : -(0.5f * (st * (std::exp(h) - 1.0f)));
    case Algorithm::SDEDPMSolverPP:
      return heun ? at * ((1.0f - std::exp(-2.0f * h)) / (-2.0f * h) + 1.0f)
                  : 0.5f * (at * (1.0f - std::exp(-2.0f * h)));
    case Algorithm::SDEDPMSolver:
      return heun ? -(2.0f * (st * ((std::exp(h) - 1.0f) / h - 1.0f)))
                  : -(st * (std::exp(h) - 1.0f));
  }
  return 0;
}

// The D1 and D2 coefficients of the third-order (heun-form) update.
std::pair<float, float> third_order_d12(Algorithm a, const Ts& t) {
  const float h = t.h, at = t.alpha_t, st = t.sigma_t;
  switch (a) {
    case Algorithm::DPMSolverPP:
      return {at * ((std::exp(-h) - 1.0f) / h + 1.0f),
              -(at * ((std::exp(-h) - 1.0f + h) / (h * h) - 0.5f))};
    case Algorithm::DPMSolver:
      return {-(st * ((std::exp(h) - 1.0f) / h - 1.0f)),
              -(st * ((std::exp(h) - 1.0f - h) / (h * h) - 0.5f))};
    case Algorithm::SDEDPMSolverPP:
      return {at * ((1.0f - std::exp(-2.0f * h)) / (-2.0f * h) + 1.0f),
              at * ((1.0f - std::exp(-2.0f * h) - 2.0f * h) / ((2.0f * h) * (2.0f * h)) - 0.5f)};
    case Algorithm::SDEDPMSolver:
      break;
  }
  DF_FAIL("third-order updates are not available for sde-dpmsolver");
}

// Shared state and conversions of both DPM-Solver schedulers.
class DPMBase : public Scheduler {
 public:
  DPMBase(const SchedulerConfig& cfg, const char* cls, bool multistep)
      : c_(resolve_common(
            cfg, {0.0001, 0.02, BetaSchedule::Linear, TimestepSpacing::Linspace, multistep}, cls)),
        cls_(cls) {
    algorithm_ = parse_algorithm(cfg.algorithm_type.value_or("dpmsolver++"), cls);
    const std::string st = cfg.solver_type.value_or("midpoint");
    DF_CHECK(st == "midpoint" || st == "heun" || st == "logrho" || st == "bh1" || st == "bh2", cls,
             ": unknown solver_type '", st, "'");
    heun_ = st == "heun";
    order_ = int(cfg.solver_order.value_or(2));
    DF_CHECK(order_ >= 1 && order_ <= 3, cls, ": solver_order must be 1, 2 or 3, got ", order_);
    karras_ = cfg.use_karras_sigmas.value_or(false);
    const std::string fs = cfg.final_sigmas_type.value_or("zero");
    DF_CHECK(fs == "zero" || fs == "sigma_min", cls, ": unknown final_sigmas_type '", fs, "'");
    final_zero_ = fs == "zero";
    DF_CHECK(
        predicts_x0(algorithm_) || !final_zero_, cls,
        ": final_sigmas_type zero is not supported for algorithm_type dpmsolver / sde-dpmsolver");
    DF_CHECK(!(algorithm_ == Algorithm::SDEDPMSolver && !multistep), cls,
             ": sde-dpmsolver is not available");
    squaredcos_ = cfg.beta_schedule == BetaSchedule::SquaredCosCapV2;
    if (c_.rescale_zero_snr) c_.alphas_cumprod.back() = std::ldexp(1.0f, -24);
    alphas_cumprod_ = c_.alphas_cumprod;
  }

  bool stochastic() const override { return is_sde(algorithm_); }
  float final_sigma() const override { return sigmas_.back(); }
  Tensor add_noise(const Tensor& original, const Tensor& noise, int i) const override {
    // alpha_t * x + sigma_t * noise at the step's sigma.
    return add_noise_at_sigma(original, noise, sigmas_.at(size_t(i)));
  }

 protected:
  // Sigmas for the given integer timesteps (or Karras, replacing the timesteps), plus the final.
  void build_sigmas(std::vector<int64_t> ts, int steps) {
    const std::vector<float> train = training_sigmas(c_.alphas_cumprod);
    std::vector<double> sig;
    if (karras_) {
      sig = karras_sigmas(train.front(), train.back(), steps);
      const std::vector<float> log_sigmas = log_of(train);
      ts.clear();
      for (double s : sig) {
        const double t = sigma_to_t(s, log_sigmas);
        ts.push_back(int64_t(squaredcos_ ? t : np_round(t)));
      }
    } else {
      for (int64_t t : ts) sig.push_back(interp_index(double(t), train));
    }
    sigmas_.assign(sig.begin(), sig.end());
    const float a0 = c_.alphas_cumprod[0];
    sigmas_.push_back(final_zero_ ? 0.0f : std::sqrt((1.0f - a0) / a0));
    timesteps_.assign(ts.begin(), ts.end());
    num_inference_steps_ = int(ts.size());
    outputs_.assign(size_t(order_), Tensor());
    reset_cursor();
  }

  // diffusers' convert_model_output: x0 (dpmsolver++) or epsilon (dpmsolver) at sigmas[i].
  Tensor convert(const Tensor& m_t, const Tensor& x_t, int i) const {
    const AlphaSigma as = alpha_sigma(sigmas_[size_t(i)]);
    const float* m = f32(m_t, "DPM-Solver model output");
    const float* x = f32(x_t, "DPM-Solver sample");
    const PredictionType p = c_.prediction;
    if (predicts_x0(algorithm_)) {
      return map(x_t, [&](int64_t k) {
        if (p == PredictionType::Epsilon) return (x[k] - as.sigma * m[k]) / as.alpha;
        if (p == PredictionType::VPrediction) return as.alpha * x[k] - as.sigma * m[k];
        return m[k];
      });
    }
    return map(x_t, [&](int64_t k) {
      if (p == PredictionType::Epsilon) return m[k];
      if (p == PredictionType::VPrediction) return as.alpha * m[k] + as.sigma * x[k];
      return (x[k] - as.alpha * m[k]) / as.sigma;
    });
  }

  void push_output(Tensor m) {
    for (size_t j = 0; j + 1 < outputs_.size(); ++j) outputs_[j] = outputs_[j + 1];
    outputs_.back() = std::move(m);
  }
  const Tensor& output(int back) const { return outputs_[outputs_.size() - size_t(back)]; }

  // x_t = cx * x + sum_j c[j] * D_j(k) + cn * noise, with D computed per element.
  template <typename D>
  Tensor combine(const Coefs& r, const Tensor& x_t, const Tensor& noise, D&& d) const {
    const float* x = x_t.data<float>();
    const float* e = noise.defined() ? noise.data<float>() : nullptr;
    return map(x_t, [&](int64_t k) {
      float ds[3];
      d(k, ds);
      float v = r.cx * x[k] + r.c[0] * ds[0] + r.c[1] * ds[1] + r.c[2] * ds[2];
      return e ? v + r.cn * e[k] : v;
    });
  }

  // Log-SNR gap and target alpha/sigma between sigma index `from` and the step's target.
  Ts target(int i, float lambda_from) const {
    const AlphaSigma t = alpha_sigma(sigmas_[size_t(i) + 1]);
    return {t.alpha, t.sigma, t.lambda - lambda_from};
  }

  Common c_;
  const char* cls_;
  Algorithm algorithm_;
  bool heun_ = false, karras_ = false, final_zero_ = true, squaredcos_ = false;
  int order_ = 2;
  std::vector<Tensor> outputs_;
};

class DPMMultistep : public DPMBase {
 public:
  explicit DPMMultistep(const SchedulerConfig& cfg)
      : DPMBase(cfg, "DPMSolverMultistepScheduler", true),
        lower_order_final_(cfg.lower_order_final.value_or(true)),
        euler_at_final_(cfg.euler_at_final.value_or(false)) {}

  void set_timesteps(int steps) override {
    build_sigmas(solver_timesteps(c_.spacing, c_.num_train_timesteps, steps, c_.steps_offset),
                 steps);
    lower_order_nums_ = 0;
  }

  Tensor step(const Tensor& model_output, int i, const Tensor& sample, Generator* gen) override {
    expect_index(i, "DPM-Solver step");
    check_same_shape(model_output, sample, "DPM-Solver step");
    const int n = int(timesteps_.size());
    const bool lower_final =
        i == n - 1 && (euler_at_final_ || (lower_order_final_ && n < 15) || final_zero_);
    const bool lower_second = i == n - 2 && lower_order_final_ && n < 15;
    push_output(convert(model_output, sample, i));
    Tensor noise;
    if (is_sde(algorithm_)) noise = need_generator(gen).randn(sample.shape());
    Tensor out;
    if (order_ == 1 || lower_order_nums_ < 1 || lower_final) {
      out = update1(i, sample, noise);
    } else if (order_ == 2 || lower_order_nums_ < 2 || lower_second) {
      out = update2(i, sample, noise);
    } else {
      out = update3(i, sample, noise);
    }
    if (lower_order_nums_ < order_) ++lower_order_nums_;
    advance();
    return out;
  }

 private:
  Tensor update1(int i, const Tensor& x, const Tensor& noise) const {
    const AlphaSigma s = alpha_sigma(sigmas_[size_t(i)]);
    const Ts t = target(i, s.lambda);
    const Coefs r = first_order(algorithm_, t, t.sigma_t / s.sigma, t.alpha_t / s.alpha);
    const float* m0 = output(1).data<float>();
    return combine(r, x, noise, [&](int64_t k, float* d) { d[0] = m0[k], d[1] = d[2] = 0; });
  }

  Tensor update2(int i, const Tensor& x, const Tensor& noise) const {
    const AlphaSigma s0 = alpha_sigma(sigmas_[size_t(i)]), s1 = alpha_sigma(sigmas_[size_t(i) - 1]);
    const Ts t = target(i, s0.lambda);
    const float r0 = (s0.lambda - s1.lambda) / t.h;
    Coefs r = first_order(algorithm_, t, t.sigma_t / s0.sigma, t.alpha_t / s0.alpha);
    r.c[1] = second_order_d1(algorithm_, heun_, t);
    const float* m0 = output(1).data<float>();
    const float* m1 = output(2).data<float>();
    const float inv_r0 = 1.0f / r0;
    return combine(r, x, noise, [&](int64_t k, float* d) {
      d[0] = m0[k], d[1] = inv_r0 * (m0[k] - m1[k]), d[2] = 0;
    });
  }

  Tensor update3(int i, const Tensor& x, const Tensor& noise) const {
    const AlphaSigma s0 = alpha_sigma(sigmas_[size_t(i)]), s1 = alpha_sigma(sigmas_[size_t(i) - 1]),
                     s2 = alpha_sigma(sigmas_[size_t(i) - 2]);
    const Ts t = target(i, s0.lambda);
    const float r0 = (s0.lambda - s1.lambda) / t.h, r1 = (s1.lambda - s2.lambda) / t.h;
    Coefs r = first_order(algorithm_, t, t.sigma_t / s0.sigma, t.alpha_t / s0.alpha);
    std::tie(r.c[1], r.c[2]) = third_order_d12(algorithm_, t);
    const float* m0 = output(1).data<float>();
    const float* m1 = output(2).data<float>();
    const float* m2 = output(3).data<float>();
    const float inv_r0 = 1.0f / r0, inv_r1 = 1.0f / r1, w = r0 / (r0 + r1),
                inv_sum = 1.0f / (r0 + r1);
    return combine(r, x, noise, [&](int64_t k, float* d) {
      const float d10 = inv_r0 * (m0[k] - m1[k]), d11 = inv_r1 * (m1[k] - m2[k]);
      d[0] = m0[k], d[1] = d10 + w * (d10 - d11), d[2] = inv_sum * (d10 - d11);
    });
  }

  bool lower_order_final_, euler_at_final_;
  int lower_order_nums_ = 0;
};

class DPMSinglestep : public DPMBase {
 public:
  explicit DPMSinglestep(const SchedulerConfig& cfg)
      : DPMBase(cfg, "DPMSolverSinglestepScheduler", false),
        lower_order_final_(cfg.lower_order_final.value_or(false)) {}

  void set_timesteps(int steps) override {
    // Always linspace over the training range (the class has no timestep_spacing).
    build_sigmas(solver_timesteps(TimestepSpacing::Linspace, c_.num_train_timesteps, steps, 0),
                 steps);
    // diffusers switches lower_order_final on for uneven step counts and final sigma zero.
    if (!lower_order_final_ && (steps % order_ != 0 || final_zero_)) lower_order_final_ = true;
    order_list_ = order_list(steps);
    sample_ = Tensor();
  }

  Tensor step(const Tensor& model_output, int i, const Tensor& sample, Generator* gen) override {
    expect_index(i, "DPM-Solver singlestep step");
    check_same_shape(model_output, sample, "DPM-Solver singlestep step");
    push_output(convert(model_output, sample, i));
    Tensor noise;
    if (is_sde(algorithm_)) noise = need_generator(gen).randn(sample.shape());
    int order = order_list_[size_t(i)];
    while (!output(order).defined()) --order;
    if (order == 1) sample_ = sample;
    Tensor out = order == 1   ? update1(i, noise)
                 : order == 2 ? update2(i, noise)
                              : update3(i, noise);
    advance();
    return out;
  }

 private:
  std::vector<int> order_list(int steps) const {
    std::vector<int> o;
    auto rep = [&](std::initializer_list<int> p, int times) {
      for (int k = 0; k < times; ++k) o.insert(o.end(), p);
    };
    if (lower_order_final_) {
      if (order_ == 3) {
        if (steps % 3 == 0) {
          rep({1, 2, 3}, steps / 3 - 1);
          o.insert(o.end(), {1, 2, 1});
        } else if (steps % 3 == 1) {
          rep({1, 2, 3}, steps / 3);
          o.push_back(1);
        } else {
          rep({1, 2, 3}, steps / 3);
          o.insert(o.end(), {1, 2});
        }
      } else if (order_ == 2) {
        if (steps % 2 == 0) {
          rep({1, 2}, steps / 2 - 1);
          o.insert(o.end(), {1, 1});
        } else {
          rep({1, 2}, steps / 2);
          o.push_back(1);
        }
      } else {
        rep({1}, steps);
      }
    } else if (order_ == 3) {
      rep({1, 2, 3}, steps / 3);
    } else if (order_ == 2) {
      rep({1, 2}, steps / 2);
    } else {
      rep({1}, steps);
    }
    DF_CHECK(int(o.size()) == steps, cls_, ": no order schedule for ", steps, " steps");
    if (final_zero_) o.back() = 1;
    return o;
  }

  Tensor update1(int i, const Tensor& noise) const {
    const AlphaSigma s = alpha_sigma(sigmas_[size_t(i)]);
    const Ts t = target(i, s.lambda);
    const Coefs r = first_order(algorithm_, t, t.sigma_t / s.sigma, t.alpha_t / s.alpha);
    const float* m0 = output(1).data<float>();
    return combine(r, sample_, noise, [&](int64_t k, float* d) { d[0] = m0[k], d[1] = d[2] = 0; });
  }

  // From sigmas[i - 1] (the sample of the group's first step) to sigmas[i + 1].
  Tensor update2(int i, const Tensor& noise) const {
    const AlphaSigma s0 = alpha_sigma(sigmas_[size_t(i)]), s1 = alpha_sigma(sigmas_[size_t(i) - 1]);
    const Ts t = target(i, s1.lambda);
    const float r0 = (s0.lambda - s1.lambda) / t.h;
    Coefs r = first_order(algorithm_, t, t.sigma_t / s1.sigma, t.alpha_t / s1.alpha);
    r.c[1] = second_order_d1(algorithm_, heun_, t);
    const float* m0 = output(1).data<float>();
    const float* m1 = output(2).data<float>();
    const float inv_r0 = 1.0f / r0;
    return combine(r, sample_, noise, [&](int64_t k, float* d) {
      d[0] = m1[k], d[1] = inv_r0 * (m0[k] - m1[k]), d[2] = 0;
    });
  }

  Tensor update3(int i, const Tensor& noise) const {
    const AlphaSigma s0 = alpha_sigma(sigmas_[size_t(i)]), s1 = alpha_sigma(sigmas_[size_t(i) - 1]),
                     s2 = alpha_sigma(sigmas_[size_t(i) - 2]);
    const Ts t = target(i, s2.lambda);
    const float r0 = (s0.lambda - s2.lambda) / t.h, r1 = (s1.lambda - s2.lambda) / t.h;
    Coefs r = first_order(algorithm_, t, t.sigma_t / s2.sigma, t.alpha_t / s2.alpha);
    if (heun_) {
      std::tie(r.c[1], r.c[2]) = third_order_d12(algorithm_, t);
    } else {
      // midpoint: only D1_1, with the heun-form D1 coefficient.
      r.c[1] = third_order_d12(algorithm_, t).first;
    }
    const float* m0 = output(1).data<float>();
    const float* m1 = output(2).data<float>();
    const float* m2 = output(3).data<float>();
    const float inv_r0 = 1.0f / r0, inv_r1 = 1.0f / r1, diff = r0 - r1;
    const bool heun = heun_;
    return combine(r, sample_, noise, [&](int64_t k, float* d) {
      const float d10 = inv_r1 * (m1[k] - m2[k]), d11 = inv_r0 * (m0[k] - m2[k]);
      d[0] = m2[k];
      d[1] = heun ? (r0 * d10 - r1 * d11) / diff : d11;
      d[2] = heun ? 2.0f * (d11 - d10) / diff : 0.0f;
    });
  }

  bool lower_order_final_;
  std::vector<int> order_list_;
  Tensor sample_;  // the sample at the start of the current single-step group
};

}  // namespace

std::unique_ptr<Scheduler> make_dpm_multistep(const SchedulerConfig& c) {
  return std::make_unique<DPMMultistep>(c);
}
std::unique_ptr<Scheduler> make_dpm_singlestep(const SchedulerConfig& c) {
  return std::make_unique<DPMSinglestep>(c);
}

}  // namespace diffuse::sampling::detail
