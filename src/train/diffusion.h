// The diffusion training objective as diffusers' train_text_to_image.py computes it: noise added
// at a timestep (DDPM forward process), epsilon or v-prediction targets, min-SNR-gamma loss
// weights, offset noise.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "sampling/schedule.h"

namespace diffuse::train {

// alphas_cumprod of the training scheduler, indexed by timestep.
struct NoiseSchedule {
  std::vector<float> alphas_cumprod;

  static NoiseSchedule from_config(const sampling::SchedulerConfig& c);
  // SD's: scaled_linear betas 0.00085 .. 0.012 over 1000 steps.
  static NoiseSchedule stable_diffusion();
  int64_t num_train_timesteps() const { return int64_t(alphas_cumprod.size()); }
  // sqrt(alphas_cumprod[t]) and sqrt(1 - alphas_cumprod[t]) (float32, as diffusers).
  float alpha(int64_t t) const;
  float sigma(int64_t t) const;
  // Signal-to-noise ratio (alpha / sigma)^2 at t, in float32 (diffusers' compute_snr).
  float snr(int64_t t) const;
};

// sqrt(acp[t]) x0 + sqrt(1 - acp[t]) noise, one timestep per batch entry (DDPMScheduler.add_noise).
Tensor add_noise(const NoiseSchedule& s, const Tensor& x0, const Tensor& noise,
                 const std::vector<int64_t>& timesteps);
// The v-prediction target sqrt(acp[t]) noise - sqrt(1 - acp[t]) x0 (get_velocity).
Tensor velocity(const NoiseSchedule& s, const Tensor& x0, const Tensor& noise,
                const std::vector<int64_t>& timesteps);
// What the model learns to predict: noise (epsilon), velocity (v_prediction) or x0 (sample).
Tensor prediction_target(sampling::PredictionType p, const NoiseSchedule& s, const Tensor& x0,
                         const Tensor& noise, const std::vector<int64_t>& timesteps);

// Min-SNR-gamma loss weights (Hang et al. 2023, as diffusers): min(snr, gamma) / snr for epsilon,
// min(snr, gamma) / (snr + 1) for v-prediction, min(snr, gamma) for sample prediction.
std::vector<float> min_snr_weights(const NoiseSchedule& s, const std::vector<int64_t>& timesteps,
                                   float gamma, sampling::PredictionType p);

// Offset noise: noise + offset * per_channel, per_channel [B, C, 1, 1] standard normal draws.
Tensor offset_noise(const Tensor& noise, const Tensor& per_channel, float offset);

// The training loss: mean squared error per batch entry, times its weight (if given), averaged
// over the batch. Differentiable in `prediction`. Weights: one per batch entry, or empty.
Tensor diffusion_loss(const Tensor& prediction, const Tensor& target,
                      const std::vector<float>& weights = {});

}  // namespace diffuse::train
