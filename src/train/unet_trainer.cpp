#include "train/unet_trainer.h"

#include "autograd/functions.h"

namespace diffuse::train {

UNetTrainer::UNetTrainer(models::UNet2DConditionModel& unet, NoiseSchedule schedule,
                         UNetTrainOptions o)
    : UNetTrainer(unet, std::move(schedule), o, make_trainable(unet)) {}

UNetTrainer::UNetTrainer(models::UNet2DConditionModel& unet, NoiseSchedule schedule,
                         UNetTrainOptions o, std::vector<nn::Module::ParamRef> trainable)
    : unet_(unet),
      schedule_(std::move(schedule)),
      o_(o),
      params_(std::move(trainable)),
      optim_(std::make_unique<Optimization>(slots(params_), o)),
      rng_(o.seed) {
  DF_CHECK(!params_.empty(), "train: no parameters to train");
  for (auto& p : params_)
    DF_CHECK(autograd::requires_grad(*p.tensor), "train: parameter ", p.name,
             " is not a trainable leaf (requires_grad)");
  unet_.set_gradient_checkpointing(o_.gradient_checkpointing);
}

TrainStepResult UNetTrainer::step(const Tensor& x0, const Tensor& context) {
  DF_CHECK(x0.dim() == 4, "train: latents must be [B, C, h, w], got ", x0.desc());
  const Tensor noise = rng_.randn(x0.shape());
  std::vector<int64_t> t;
  const uint32_t n = uint32_t(schedule_.num_train_timesteps());
  for (int64_t i = 0; i < x0.size(0); ++i) t.push_back(int64_t(rng_.next_u32() % n));
  return step(x0, context, noise, t);
}

TrainStepResult UNetTrainer::step(const Tensor& x0, const Tensor& context, const Tensor& noise_in,
                                  const std::vector<int64_t>& timesteps) {
  namespace F = autograd;
  Tensor noise = noise_in;
  if (o_.noise_offset != 0)
    noise = offset_noise(noise, rng_.randn({x0.size(0), x0.size(1), 1, 1}), o_.noise_offset);
  const Tensor noisy = add_noise(schedule_, x0, noise, timesteps);
  const Tensor target = prediction_target(o_.prediction, schedule_, x0, noise, timesteps);
  const std::vector<float> tf(timesteps.begin(), timesteps.end());
  Tensor pred;
  {
    F::AutocastGuard cast(o_.bf16);
    pred = unet_.forward(noisy, tf, context);
  }
  const std::vector<float> w =
      o_.min_snr_gamma > 0 ? min_snr_weights(schedule_, timesteps, o_.min_snr_gamma, o_.prediction)
                           : std::vector<float>();
  return optim_->backward_and_step(diffusion_loss(pred, target, w));
}

}  // namespace diffuse::train
