// One UNet training loop step as diffusers' train_text_to_image.py runs it: noise (with optional
// offset noise) and timesteps drawn from a seeded generator, the epsilon / v / sample objective
// with optional min-SNR-gamma weights, bf16 autocast, gradient checkpointing, accumulation over
// micro-batches, clipping, a learning-rate schedule, AdamW and an optional EMA of the weights.
#pragma once
#include <memory>

#include "models/unet/unet_2d_condition.h"
#include "sampling/rng.h"
#include "train/diffusion.h"
#include "train/optimization.h"

namespace diffuse::train {

struct UNetTrainOptions : OptimizationOptions {
  float min_snr_gamma = 0;  // 0: plain mean squared error
  float noise_offset = 0;   // 0: no offset noise
  sampling::PredictionType prediction = sampling::PredictionType::Epsilon;
  bool bf16 = false;  // bf16 autocast of the forward pass (fp32 master weights)
  bool gradient_checkpointing = false;
  uint64_t seed = 0;  // noise and timesteps (torch's CPU generator)
};

class UNetTrainer {
 public:
  // Makes every parameter of `unet` a trainable f32 leaf (owned copies).
  UNetTrainer(models::UNet2DConditionModel& unet, NoiseSchedule schedule, UNetTrainOptions o);
  // Trains only `trainable` (f32 leaves that requires_grad, e.g. a LoraNetwork's params());
  // the UNet's own weights are left as they are.
  UNetTrainer(models::UNet2DConditionModel& unet, NoiseSchedule schedule, UNetTrainOptions o,
              std::vector<nn::Module::ParamRef> trainable);

  // One micro-batch: clean latents x0 [B, C, h, w] (already scaled by the VAE factor) and their
  // conditioning [B, S, D]; noise and timesteps come from the trainer's generator.
  TrainStepResult step(const Tensor& x0, const Tensor& context);
  // The same with the noise and timesteps given (offset noise, if on, is still drawn).
  TrainStepResult step(const Tensor& x0, const Tensor& context, const Tensor& noise,
                       const std::vector<int64_t>& timesteps);

  const std::vector<nn::Module::ParamRef>& params() const { return params_; }
  AdamW& optimizer() { return optim_->optimizer(); }
  const Ema* ema() const { return optim_->ema(); }
  Optimization& optimization() { return *optim_; }
  int64_t optimizer_steps() const { return optim_->optimizer_steps(); }

 private:
  models::UNet2DConditionModel& unet_;
  NoiseSchedule schedule_;
  UNetTrainOptions o_;
  std::vector<nn::Module::ParamRef> params_;
  std::unique_ptr<Optimization> optim_;
  sampling::TorchCpuGenerator rng_;
};

}  // namespace diffuse::train
