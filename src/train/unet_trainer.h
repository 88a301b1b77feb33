// One UNet training loop step as diffusers' train_text_to_image.py runs it: noise (with optional
// offset noise) and timesteps drawn from a seeded generator, the epsilon / v / sample objective
// with optional min-SNR-gamma weights, bf16 autocast, gradient checkpointing, accumulation over
// micro-batches, clipping, a learning-rate schedule, AdamW and an optional EMA of the weights.
#pragma once
#include <memory>
#include <optional>

#include "models/unet/unet_2d_condition.h"
#include "sampling/rng.h"
#include "train/diffusion.h"
#include "train/optim.h"

namespace diffuse::train {

struct UNetTrainOptions {
  AdamWOptions adamw;             // adamw.lr is the peak learning rate
  LrSchedule lr_schedule;         // multiplier of adamw.lr per optimizer step
  int64_t grad_accumulation = 1;  // micro-batches per optimizer step
  double max_grad_norm = 0;       // 0: no clipping
  std::optional<EmaOptions> ema;  // set: keep an EMA of the weights
  float min_snr_gamma = 0;        // 0: plain mean squared error
  float noise_offset = 0;         // 0: no offset noise
  sampling::PredictionType prediction = sampling::PredictionType::Epsilon;
  bool bf16 = false;  // bf16 autocast of the forward pass (fp32 master weights)
  bool gradient_checkpointing = false;
  uint64_t seed = 0;  // noise and timesteps (torch's CPU generator)
};

struct TrainStepResult {
  float loss = 0;        // of this micro-batch (unscaled)
  bool stepped = false;  // the optimizer stepped after this micro-batch
  double grad_norm = 0;  // before clipping, when stepped and clipping is on
  float lr = 0;          // learning rate of the last optimizer step
};

class UNetTrainer {
 public:
  // Makes every parameter of `unet` a trainable f32 leaf (owned copies).
  UNetTrainer(models::UNet2DConditionModel& unet, NoiseSchedule schedule, UNetTrainOptions o);

  // One micro-batch: clean latents x0 [B, C, h, w] (already scaled by the VAE factor) and their
  // conditioning [B, S, D]; noise and timesteps come from the trainer's generator.
  TrainStepResult step(const Tensor& x0, const Tensor& context);
  // The same with the noise and timesteps given (offset noise, if on, is still drawn).
  TrainStepResult step(const Tensor& x0, const Tensor& context, const Tensor& noise,
                       const std::vector<int64_t>& timesteps);

  const std::vector<nn::Module::ParamRef>& params() const { return params_; }
  AdamW& optimizer() { return *opt_; }
  const Ema* ema() const { return ema_.get(); }
  int64_t optimizer_steps() const { return opt_->steps(); }

 private:
  models::UNet2DConditionModel& unet_;
  NoiseSchedule schedule_;
  UNetTrainOptions o_;
  std::vector<nn::Module::ParamRef> params_;
  std::unique_ptr<AdamW> opt_;
  std::unique_ptr<Ema> ema_;
  GradientAccumulation accum_;
  sampling::TorchCpuGenerator rng_;
};

}  // namespace diffuse::train
