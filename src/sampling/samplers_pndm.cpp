// PNDMScheduler (diffusers scheduling_pndm.py): Runge-Kutta warm-up steps (unless
// skip_prk_steps, as in Stable Diffusion's config) then linear multistep (PLMS).
#include <algorithm>
#include <cmath>
#include <deque>
#include <optional>

#include "sampling/scheduler_impl.h"

namespace diffuse::sampling::detail {

namespace {

constexpr ClassDefaults kDefaults{0.0001, 0.02, BetaSchedule::Linear, TimestepSpacing::Leading};

// a * x + b * y elementwise (float), as torch evaluates `a * x + b * y`.
Tensor axpby(float a, const Tensor& x, float b, const Tensor& y) {
  const float* px = x.data<float>();
  const float* py = y.data<float>();
  return map(x, [&](int64_t k) { return a * px[k] + b * py[k]; });
}

class PNDM : public Scheduler {
 public:
  explicit PNDM(const SchedulerConfig& cfg) : c_(resolve_common(cfg, kDefaults, "PNDMScheduler")) {
    skip_prk_ = cfg.skip_prk_steps.value_or(false);
    final_alpha_cumprod_ = cfg.set_alpha_to_one.value_or(false) ? 1.0f : c_.alphas_cumprod[0];
    DF_CHECK(c_.prediction != PredictionType::Sample,
             "PNDMScheduler supports prediction_type epsilon or v_prediction only");
    alphas_cumprod_ = c_.alphas_cumprod;
  }

  void set_timesteps(int steps) override {
    const int64_t n = c_.num_train_timesteps;
    // Ascending base timesteps.
    std::vector<int64_t> base;
    if (c_.spacing == TimestepSpacing::Trailing) {
      for (double v : np_arange(double(n), 0, -double(n) / double(steps)))
        base.insert(base.begin(), int64_t(np_round(v)) - 1);
    } else {
      base = discrete_timesteps(c_.spacing, n, steps, c_.steps_offset);
      std::reverse(base.begin(), base.end());
    }
    prk_.clear();
    std::vector<int64_t> plms;
    if (skip_prk_) {
      // base[:-1], base[-2:-1], base[-1:], reversed: the second-to-last entry is repeated.
      for (size_t k = 0; k + 1 < base.size(); ++k) plms.push_back(base[k]);
      if (base.size() >= 2) plms.push_back(base[base.size() - 2]);
      plms.push_back(base.back());
      std::reverse(plms.begin(), plms.end());
    } else {
      DF_CHECK(base.size() >= 4, "PNDMScheduler without skip_prk_steps needs at least 4 steps");
      const int64_t half = n / steps / 2;
      std::vector<int64_t> p;  // base[-4:].repeat(2) + tile([0, half], 4)
      for (size_t k = base.size() - 4; k < base.size(); ++k) {
        p.push_back(base[k]);
        p.push_back(base[k] + half);
      }
      p.pop_back();              // [:-1]
      std::vector<int64_t> rep;  // .repeat(2)[1:-1]
      for (int64_t v : p) rep.insert(rep.end(), {v, v});
      prk_.assign(rep.begin() + 1, rep.end() - 1);
      std::reverse(prk_.begin(), prk_.end());
      for (size_t k = 0; k + 3 < base.size(); ++k) plms.push_back(base[k]);
      std::reverse(plms.begin(), plms.end());
    }
    timesteps_.clear();
    for (int64_t t : prk_) timesteps_.push_back(float(t));
    for (int64_t t : plms) timesteps_.push_back(float(t));
    num_inference_steps_ = steps;
    ets_.clear();
    counter_ = 0;
    cur_sample_.reset();
    cur_model_output_.reset();
    reset_cursor();
  }

  float final_sigma() const override {
    return std::sqrt((1.0f - final_alpha_cumprod_) / final_alpha_cumprod_);
  }

  Tensor step(const Tensor& model_output, int i, const Tensor& sample, Generator*) override {
    expect_index(i, "PNDM step");
    check_same_shape(model_output, sample, "PNDM step");
    f32(model_output, "PNDM model output");
    f32(sample, "PNDM sample");
    const int64_t t = int64_t(timesteps_[size_t(i)]);
    Tensor out = (counter_ < int64_t(prk_.size()) && !skip_prk_)
                     ? step_prk(model_output, t, sample)
                     : step_plms(model_output, t, sample);
    advance();
    return out;
  }

  Tensor add_noise(const Tensor& original, const Tensor& noise, int i) const override {
    return add_noise_vp(original, noise, c_.alphas_cumprod[size_t(timesteps_.at(size_t(i)))]);
  }

 private:
  Tensor step_prk(const Tensor& m, int64_t t, const Tensor& sample) {
    const int64_t diff = counter_ % 2 ? 0 : c_.num_train_timesteps / num_inference_steps_ / 2;
    const int64_t prev_t = t - diff;
    const int64_t t_ref = prk_[size_t(counter_ / 4 * 4)];
    Tensor output = m;
    switch (counter_ % 4) {
      case 0:
        accumulate(1.0f / 6.0f, m);
        ets_.push_back(m);
        cur_sample_ = sample;
        break;
      case 1:
      case 2:
        accumulate(1.0f / 3.0f, m);
        break;
      case 3:
        output = axpby(1.0f, *cur_model_output_, 1.0f / 6.0f, m);
        cur_model_output_.reset();
        break;
    }
    const Tensor& cur = cur_sample_ ? *cur_sample_ : sample;
    ++counter_;
    return prev_sample(cur, t_ref, prev_t, output);
  }

  Tensor step_plms(const Tensor& m, int64_t t, const Tensor& sample_in) {
    DF_CHECK(skip_prk_ || ets_.size() >= 3, "PNDM: PLMS steps need the PRK warm-up first");
    const int64_t ratio = c_.num_train_timesteps / num_inference_steps_;
    int64_t prev_t = t - ratio;
    if (counter_ != 1) {
      while (ets_.size() > 3) ets_.pop_front();
      ets_.push_back(m);
    } else {
      prev_t = t;
      t = t + ratio;
    }
    Tensor sample = sample_in;
    Tensor mo;
    const size_t n = ets_.size();
    auto e = [&](size_t back) { return ets_[n - back].data<float>(); };
    if (n == 1 && counter_ == 0) {
      mo = m;
      cur_sample_ = sample;
    } else if (n == 1 && counter_ == 1) {
      const float *a = m.data<float>(), *b = e(1);
      mo = map(m, [&](int64_t k) { return (a[k] + b[k]) / 2.0f; });
      sample = *cur_sample_;
      cur_sample_.reset();
    } else if (n == 2) {
      const float *e1 = e(1), *e2 = e(2);
      mo = map(m, [&](int64_t k) { return (3.0f * e1[k] - e2[k]) / 2.0f; });
    } else if (n == 3) {
      const float *e1 = e(1), *e2 = e(2), *e3 = e(3);
      mo =
          map(m, [&](int64_t k) { return (23.0f * e1[k] - 16.0f * e2[k] + 5.0f * e3[k]) / 12.0f; });
    } else {
      const float *e1 = e(1), *e2 = e(2), *e3 = e(3), *e4 = e(4);
      const float c = float(1.0 / 24.0);
      mo = map(m, [&](int64_t k) {
        return c * (55.0f * e1[k] - 59.0f * e2[k] + 37.0f * e3[k] - 9.0f * e4[k]);
      });
    }
    ++counter_;
    return prev_sample(sample, t, prev_t, mo);
  }

  void accumulate(float w, const Tensor& m) {
    if (!cur_model_output_) {
      const float* p = m.data<float>();
      cur_model_output_ = map(m, [&](int64_t k) { return w * p[k]; });
    } else {
      cur_model_output_ = axpby(1.0f, *cur_model_output_, w, m);
    }
  }

  // diffusers' _get_prev_sample: formula (9) of the PNDM paper.
  Tensor prev_sample(const Tensor& sample, int64_t t, int64_t prev_t, const Tensor& m) const {
    const float a_t = c_.alphas_cumprod[size_t(t)];
    const float a_prev = prev_t >= 0 ? c_.alphas_cumprod[size_t(prev_t)] : final_alpha_cumprod_;
    const float beta_t = 1.0f - a_t, beta_prev = 1.0f - a_prev;
    const float sample_coef = std::sqrt(a_prev / a_t);
    const float denom = a_t * std::sqrt(beta_prev) + std::sqrt(a_t * beta_t * a_prev);
    const float diff = a_prev - a_t;
    const bool v = c_.prediction == PredictionType::VPrediction;
    const float sa = std::sqrt(a_t), sb = std::sqrt(beta_t);
    const float* x = sample.data<float>();
    const float* pm = m.data<float>();
    return map(sample, [&](int64_t k) {
      const float eps = v ? sa * pm[k] + sb * x[k] : pm[k];
      return sample_coef * x[k] - diff * eps / denom;
    });
  }

  Common c_;
  bool skip_prk_;
  float final_alpha_cumprod_;
  std::vector<int64_t> prk_;
  std::deque<Tensor> ets_;
  int64_t counter_ = 0;
  std::optional<Tensor> cur_sample_, cur_model_output_;
};

}  // namespace

std::unique_ptr<Scheduler> make_pndm(const SchedulerConfig& c) {
  return std::make_unique<PNDM>(c);
}

}  // namespace diffuse::sampling::detail
