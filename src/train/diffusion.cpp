#include "train/diffusion.h"

#include <algorithm>
#include <cmath>

#include "autograd/functions.h"

namespace diffuse::train {

namespace F = autograd;

NoiseSchedule NoiseSchedule::from_config(const sampling::SchedulerConfig& c) {
  const auto betas = c.trained_betas ? *c.trained_betas
                                     : sampling::make_betas(
                                           c.beta_schedule.value_or(sampling::BetaSchedule::Linear),
                                           c.beta_start.value_or(0.0001), c.beta_end.value_or(0.02),
                                           c.num_train_timesteps.value_or(1000),
                                           c.rescale_betas_zero_snr.value_or(false));
  return {sampling::cumprod_alphas(betas)};
}

NoiseSchedule NoiseSchedule::stable_diffusion() {
  return from_config(sampling::SchedulerConfig::stable_diffusion());
}

namespace {
float acp_at(const NoiseSchedule& s, int64_t t) {
  DF_CHECK(t >= 0 && t < s.num_train_timesteps(), "timestep ", t, " out of range [0, ",
           s.num_train_timesteps(), ")");
  return s.alphas_cumprod[size_t(t)];
}

// [B] per-entry factors -> [B, 1, ..., 1] broadcastable against x
Tensor per_entry(const std::vector<float>& v, const Tensor& x) {
  Shape s(size_t(x.dim()), 1);
  s[0] = int64_t(v.size());
  return Tensor::from_vector(v, s);
}

void check_batch(const Tensor& x0, const Tensor& noise, const std::vector<int64_t>& t,
                 const char* what) {
  DF_CHECK(x0.shape() == noise.shape(), what, ": x0 ", x0.desc(), " and noise ", noise.desc(),
           " differ in shape");
  DF_CHECK(x0.dim() >= 1 && x0.size(0) == int64_t(t.size()), what, ": ", t.size(),
           " timesteps for a batch of ", x0.dim() ? x0.size(0) : 0);
}

Tensor combine(const NoiseSchedule& s, const Tensor& a, const Tensor& b,
               const std::vector<int64_t>& timesteps, bool velocity) {
  std::vector<float> ca, cb;
  for (int64_t t : timesteps) {
    ca.push_back(s.alpha(t));
    cb.push_back(velocity ? -s.sigma(t) : s.sigma(t));
  }
  // add_noise: alpha x0 + sigma noise; velocity: alpha noise - sigma x0
  return F::add(F::mul(per_entry(ca, a), a), F::mul(per_entry(cb, b), b));
}
}  // namespace

float NoiseSchedule::alpha(int64_t t) const {
  return std::sqrt(acp_at(*this, t));
}
float NoiseSchedule::sigma(int64_t t) const {
  return std::sqrt(1.0f - acp_at(*this, t));
}
float NoiseSchedule::snr(int64_t t) const {
  const float r = alpha(t) / sigma(t);
  return r * r;
}

Tensor add_noise(const NoiseSchedule& s, const Tensor& x0, const Tensor& noise,
                 const std::vector<int64_t>& timesteps) {
  check_batch(x0, noise, timesteps, "add_noise");
  return combine(s, x0, noise, timesteps, false);
}

Tensor velocity(const NoiseSchedule& s, const Tensor& x0, const Tensor& noise,
                const std::vector<int64_t>& timesteps) {
  check_batch(x0, noise, timesteps, "velocity");
  return combine(s, noise, x0, timesteps, true);
}

Tensor prediction_target(sampling::PredictionType p, const NoiseSchedule& s, const Tensor& x0,
                         const Tensor& noise, const std::vector<int64_t>& timesteps) {
  switch (p) {
    case sampling::PredictionType::Epsilon:
      return noise;
    case sampling::PredictionType::VPrediction:
      return velocity(s, x0, noise, timesteps);
    case sampling::PredictionType::Sample:
      return x0;
  }
  return noise;
}

std::vector<float> min_snr_weights(const NoiseSchedule& s, const std::vector<int64_t>& timesteps,
                                   float gamma, sampling::PredictionType p) {
  DF_CHECK(gamma > 0, "min-SNR gamma must be positive, got ", gamma);
  std::vector<float> w;
  for (int64_t t : timesteps) {
    const float snr = s.snr(t), m = std::min(snr, gamma);
    switch (p) {
      case sampling::PredictionType::Epsilon:
        w.push_back(m / snr);
        break;
      case sampling::PredictionType::VPrediction:
        w.push_back(m / (snr + 1.0f));
        break;
      case sampling::PredictionType::Sample:
        w.push_back(m);
        break;
    }
  }
  return w;
}

Tensor offset_noise(const Tensor& noise, const Tensor& per_channel, float offset) {
  DF_CHECK(noise.dim() == 4 && per_channel.shape() == Shape({noise.size(0), noise.size(1), 1, 1}),
           "offset_noise: per-channel noise must be [", noise.dim() == 4 ? noise.size(0) : 0, ", ",
           noise.dim() == 4 ? noise.size(1) : 0, ", 1, 1], got ", per_channel.desc());
  return F::add(noise, F::scale(per_channel, offset));
}

Tensor diffusion_loss(const Tensor& prediction, const Tensor& target,
                      const std::vector<float>& weights) {
  DF_CHECK(prediction.shape() == target.shape(), "diffusion_loss: prediction ", prediction.desc(),
           " and target ", target.desc(), " differ in shape");
  if (weights.empty()) return F::mse_loss(prediction, target);
  DF_CHECK(prediction.dim() >= 2 && int64_t(weights.size()) == prediction.size(0),
           "diffusion_loss: ", weights.size(), " weights for a batch of ", prediction.size(0));
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < prediction.dim(); ++d) dims.push_back(d);
  Tensor per = F::mean(F::square(F::sub(prediction, target)), dims, false);  // [B]
  return F::mean(F::mul(per, Tensor::from_vector(weights, {int64_t(weights.size())})));
}

}  // namespace diffuse::train
