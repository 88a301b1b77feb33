// UniPCMultistepScheduler (diffusers scheduling_unipc_multistep.py): the UniP predictor with
// the UniC corrector applied to each new sample once its model output is known.
#include <cmath>
#include <set>

#include "sampling/scheduler_impl.h"

namespace diffuse::sampling::detail {

namespace {

// Solves the small dense system A x = b (Gaussian elimination with partial pivoting).
std::vector<double> solve(std::vector<std::vector<double>> a, std::vector<double> b) {
  const size_t n = b.size();
  for (size_t col = 0; col < n; ++col) {
    size_t piv = col;
    for (size_t r = col + 1; r < n; ++r)
      if (std::abs(a[r][col]) > std::abs(a[piv][col])) piv = r;
    std::swap(a[col], a[piv]);
    std::swap(b[col], b[piv]);
    DF_CHECK(a[col][col] != 0, "UniPC: singular coefficient system");
    for (size_t r = col + 1; r < n; ++r) {
      const double f = a[r][col] / a[col][col];
      for (size_t c = col; c < n; ++c) a[r][c] -= f * a[col][c];
      b[r] -= f * b[col];
    }
  }
  std::vector<double> x(n);
  for (size_t r = n; r-- > 0;) {
    double s = b[r];
    for (size_t c = r + 1; c < n; ++c) s -= a[r][c] * x[c];
    x[r] = s / a[r][r];
  }
  return x;
}

std::vector<const float*> data_of(const std::vector<Tensor>& ts) {
  std::vector<const float*> p;
  for (const Tensor& t : ts) p.push_back(t.data<float>());
  return p;
}

class UniPC : public Scheduler {
 public:
  explicit UniPC(const SchedulerConfig& cfg)
      : c_(resolve_common(cfg,
                          {0.0001, 0.02, BetaSchedule::Linear, TimestepSpacing::Linspace, true},
                          "UniPCMultistepScheduler")) {
    order_ = int(cfg.solver_order.value_or(2));
    DF_CHECK(order_ >= 1, "UniPCMultistepScheduler: solver_order must be >= 1");
    predict_x0_ = cfg.predict_x0.value_or(true);
    const std::string st = cfg.solver_type.value_or("bh2");
    DF_CHECK(st == "bh1" || st == "bh2" || st == "midpoint" || st == "heun" || st == "logrho",
             "UniPCMultistepScheduler: unknown solver_type '", st, "'");
    bh1_ = st == "bh1";
    lower_order_final_ = cfg.lower_order_final.value_or(true);
    if (cfg.disable_corrector)
      disable_corrector_.insert(cfg.disable_corrector->begin(), cfg.disable_corrector->end());
    karras_ = cfg.use_karras_sigmas.value_or(false);
    sigma_min_ = cfg.sigma_min;
    sigma_max_ = cfg.sigma_max;
    const std::string fs = cfg.final_sigmas_type.value_or("zero");
    DF_CHECK(fs == "zero" || fs == "sigma_min",
             "UniPCMultistepScheduler: unknown final_sigmas_type '", fs, "'");
    final_zero_ = fs == "zero";
    DF_CHECK(predict_x0_ || !final_zero_,
             "UniPCMultistepScheduler: predict_x0 false (noise prediction) cannot step to sigma 0; "
             "use final_sigmas_type sigma_min");
    if (c_.rescale_zero_snr) c_.alphas_cumprod.back() = std::ldexp(1.0f, -24);
    alphas_cumprod_ = c_.alphas_cumprod;
  }

  void set_timesteps(int steps) override {
    std::vector<int64_t> ts =
        solver_timesteps(c_.spacing, c_.num_train_timesteps, steps, c_.steps_offset);
    const std::vector<float> train = training_sigmas(c_.alphas_cumprod);
    std::vector<double> sig;
    float last;
    if (karras_) {
      sig = karras_sigmas(sigma_min_.value_or(train.front()), sigma_max_.value_or(train.back()),
                          steps);
      const std::vector<float> log_sigmas = log_of(train);
      ts.clear();
      for (double s : sig) ts.push_back(int64_t(np_round(sigma_to_t(s, log_sigmas))));
      last = final_zero_ ? 0.0f : float(sig.back());
    } else {
      for (int64_t t : ts) sig.push_back(interp_index(double(t), train));
      const float a0 = c_.alphas_cumprod[0];
      last = final_zero_ ? 0.0f : std::sqrt((1.0f - a0) / a0);
    }
    sigmas_.assign(sig.begin(), sig.end());
    sigmas_.push_back(last);
    timesteps_.assign(ts.begin(), ts.end());
    num_inference_steps_ = int(ts.size());
    outputs_.assign(size_t(order_), Tensor());
    lower_order_nums_ = 0;
    this_order_ = 0;
    last_sample_ = Tensor();
    reset_cursor();
  }

  float final_sigma() const override { return sigmas_.back(); }

  Tensor add_noise(const Tensor& original, const Tensor& noise, int i) const override {
    return add_noise_at_sigma(original, noise, sigmas_.at(size_t(i)));
  }

  Tensor step(const Tensor& model_output, int i, const Tensor& sample_in, Generator*) override {
    expect_index(i, "UniPC step");
    check_same_shape(model_output, sample_in, "UniPC step");
    const bool use_corrector = i > 0 && !disable_corrector_.count(i - 1) && last_sample_.defined();
    Tensor converted = convert(model_output, sample_in, i);
    Tensor sample = sample_in;
    if (use_corrector) sample = corrector(converted, sample, i);
    for (size_t j = 0; j + 1 < outputs_.size(); ++j) outputs_[j] = outputs_[j + 1];
    outputs_.back() = converted;
    const int n = int(timesteps_.size());
    const int this_order = lower_order_final_ ? std::min(order_, n - i) : order_;
    this_order_ = std::min(this_order, lower_order_nums_ + 1);
    last_sample_ = sample;
    Tensor out = predictor(sample, i);
    if (lower_order_nums_ < order_) ++lower_order_nums_;
    advance();
    return out;
  }

 private:
  Tensor convert(const Tensor& m_t, const Tensor& x_t, int i) const {
    const AlphaSigma as = alpha_sigma(sigmas_[size_t(i)]);
    const float* m = f32(m_t, "UniPC model output");
    const float* x = f32(x_t, "UniPC sample");
    const PredictionType p = c_.prediction;
    if (predict_x0_) {
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

  const Tensor& output(int back) const { return outputs_[outputs_.size() - size_t(back)]; }

  // The B(h) system of UniPC: R[j][k] = rks[k]^j, b[j] = h_phi_{j+1} * (j+1)! / B(h).
  struct System {
    float hh, h_phi_1, b_h;
    std::vector<std::vector<double>> r;
    std::vector<double> b;
  };
  System system(float h, const std::vector<float>& rks_in, int order) const {
    System s;
    std::vector<float> rks = rks_in;
    rks.push_back(1.0f);
    s.hh = predict_x0_ ? -h : h;
    s.h_phi_1 = std::expm1(s.hh);
    float h_phi_k = s.h_phi_1 / s.hh - 1.0f;
    float factorial = 1.0f;
    s.b_h = bh1_ ? s.hh : std::expm1(s.hh);
    for (int j = 1; j <= order; ++j) {
      std::vector<double> row;
      for (float rk : rks) row.push_back(double(std::pow(rk, float(j - 1))));
      s.r.push_back(row);
      s.b.push_back(double(h_phi_k * factorial / s.b_h));
      factorial *= float(j + 1);
      h_phi_k = h_phi_k / s.hh - 1.0f / factorial;
    }
    return s;
  }

  // UniP: from `x` at sigmas[i] to sigmas[i + 1].
  Tensor predictor(const Tensor& x_t, int i) const {
    const int order = this_order_;
    const AlphaSigma t = alpha_sigma(sigmas_[size_t(i) + 1]);
    const AlphaSigma s0 = alpha_sigma(sigmas_[size_t(i)]);
    const float h = t.lambda - s0.lambda;
    const float* m0 = output(1).data<float>();
    std::vector<float> rks;
    std::vector<Tensor> d1s;
    for (int k = 1; k < order; ++k) {
      const float rk = (alpha_sigma(sigmas_[size_t(i - k)]).lambda - s0.lambda) / h;
      const float* mi = output(k + 1).data<float>();
      rks.push_back(rk);
      d1s.push_back(map(x_t, [&](int64_t e) { return (mi[e] - m0[e]) / rk; }));
    }
    const System sys = system(h, rks, order);
    std::vector<float> rhos;
    if (!d1s.empty()) {
      if (order == 2) {
        rhos = {0.5f};
      } else {
        std::vector<std::vector<double>> r(size_t(order - 1));
        for (int a = 0; a < order - 1; ++a)
          r[size_t(a)].assign(sys.r[size_t(a)].begin(), sys.r[size_t(a)].begin() + order - 1);
        for (double v : solve(r, {sys.b.begin(), sys.b.begin() + order - 1}))
          rhos.push_back(float(v));
      }
    }
    const float cx = predict_x0_ ? t.sigma / s0.sigma : t.alpha / s0.alpha;
    const float cm = predict_x0_ ? t.alpha * sys.h_phi_1 : t.sigma * sys.h_phi_1;
    const float cres = predict_x0_ ? t.alpha * sys.b_h : t.sigma * sys.b_h;
    const float* x = x_t.data<float>();
    const std::vector<const float*> d = data_of(d1s);
    // Without past outputs the residual term is absent (diffusers multiplies B(h) by 0 there,
    // which is NaN for bh1 at a final sigma of 0).
    return map(x_t, [&](int64_t e) {
      const float base = cx * x[e] - cm * m0[e];
      if (d.empty()) return base;
      float res = 0;
      for (size_t k = 0; k < d.size(); ++k) res += rhos[k] * d[k][e];
      return base - cres * res;
    });
  }

  // UniC: corrects the sample at sigmas[i] (reached from last_sample_ at sigmas[i - 1]) with the
  // new model output.
  Tensor corrector(const Tensor& model_t, const Tensor& this_sample, int i) const {
    const int order = this_order_;
    const AlphaSigma t = alpha_sigma(sigmas_[size_t(i)]);
    const AlphaSigma s0 = alpha_sigma(sigmas_[size_t(i) - 1]);
    const float h = t.lambda - s0.lambda;
    const float* m0 = output(1).data<float>();
    std::vector<float> rks;
    std::vector<Tensor> d1s;
    for (int k = 1; k < order; ++k) {
      const float rk = (alpha_sigma(sigmas_[size_t(i - (k + 1))]).lambda - s0.lambda) / h;
      const float* mi = output(k + 1).data<float>();
      rks.push_back(rk);
      d1s.push_back(map(this_sample, [&](int64_t e) { return (mi[e] - m0[e]) / rk; }));
    }
    const System sys = system(h, rks, order);
    std::vector<float> rhos;
    if (order == 1) {
      rhos = {0.5f};
    } else {
      for (double v : solve(sys.r, sys.b)) rhos.push_back(float(v));
    }
    const float cx = predict_x0_ ? t.sigma / s0.sigma : t.alpha / s0.alpha;
    const float cm = predict_x0_ ? t.alpha * sys.h_phi_1 : t.sigma * sys.h_phi_1;
    const float cres = predict_x0_ ? t.alpha * sys.b_h : t.sigma * sys.b_h;
    const float* x = last_sample_.data<float>();
    const float* mt = model_t.data<float>();
    const float rho_t = rhos.back();
    const std::vector<const float*> d = data_of(d1s);
    return map(this_sample, [&](int64_t e) {
      float res = 0;
      for (size_t k = 0; k < d.size(); ++k) res += rhos[k] * d[k][e];
      return (cx * x[e] - cm * m0[e]) - cres * (res + rho_t * (mt[e] - m0[e]));
    });
  }

  Common c_;
  int order_ = 2;
  bool predict_x0_ = true, bh1_ = false, lower_order_final_ = true, karras_ = false,
       final_zero_ = true;
  std::optional<double> sigma_min_, sigma_max_;
  std::set<int64_t> disable_corrector_;
  std::vector<Tensor> outputs_;
  int lower_order_nums_ = 0, this_order_ = 0;
  Tensor last_sample_;
};

}  // namespace

std::unique_ptr<Scheduler> make_unipc(const SchedulerConfig& c) {
  return std::make_unique<UniPC>(c);
}

}  // namespace diffuse::sampling::detail
