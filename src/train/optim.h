// Optimizers and their companions: AdamW (torch.optim.AdamW), an exponential moving average of
// the weights (diffusers' EMAModel), gradient clipping by global norm (clip_grad_norm_),
// learning-rate schedules (transformers' warm-up + cosine / linear / constant) and gradient
// accumulation over micro-batches.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"

namespace diffuse::train {

// A module's parameters as trainable f32 leaves: each is copied into owned memory (weights may
// be memory-mapped and read-only) and marked requires_grad. Returns them in named order.
std::vector<nn::Module::ParamRef> make_trainable(nn::Module& m);
// The tensor slots of the given parameters.
std::vector<Tensor*> slots(const std::vector<nn::Module::ParamRef>& params);

struct AdamWOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f, beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 1e-2f;
};

// torch.optim.AdamW (no amsgrad), step for step in float32 as torch's single-tensor CPU path:
//   p *= 1 - lr wd;  m = lerp(m, g, 1 - b1);  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Parameters without a gradient are skipped (their step count still advances with the others').
class AdamW {
 public:
  AdamW(std::vector<Tensor*> params, AdamWOptions o);
  void step();
  void zero_grad();
  void set_lr(float lr) { opt_.lr = lr; }
  float lr() const { return opt_.lr; }
  int64_t steps() const { return step_; }
  const AdamWOptions& options() const { return opt_; }
  // State, as torch's state_dict names it: exp_avg and exp_avg_sq per parameter.
  const std::vector<Tensor>& exp_avg() const { return m_; }
  const std::vector<Tensor>& exp_avg_sq() const { return v_; }
  // Restores a saved state (to resume training): one exp_avg and exp_avg_sq per parameter, in
  // order and shape, and the number of steps taken.
  void load_state(const std::vector<Tensor>& exp_avg, const std::vector<Tensor>& exp_avg_sq,
                  int64_t steps);

 private:
  std::vector<Tensor*> params_;
  std::vector<Tensor> m_, v_;
  AdamWOptions opt_;
  int64_t step_ = 0;
};

// Sum of squares of every gradient, square-rooted (the global 2-norm), and scaling of every
// gradient by max_norm / (norm + 1e-6) when that is below 1 (torch's clip_grad_norm_).
// Returns the norm before clipping.
double clip_grad_norm(const std::vector<Tensor*>& params, double max_norm);

struct EmaOptions {
  float decay = 0.9999f;
  float min_decay = 0.0f;
  int64_t update_after_step = 0;
  bool use_warmup = false;  // decay = 1 - (1 + step / inv_gamma)^-power
  float inv_gamma = 1.0f;
  float power = 2.0f / 3.0f;
};

// diffusers' EMAModel: shadow = shadow - (1 - decay) (shadow - param) after each optimizer step,
// with decay min(options.decay, (1 + step) / (10 + step)) (or the warm-up form), 0 at first.
class Ema {
 public:
  Ema(const std::vector<Tensor*>& params, EmaOptions o = {});
  void update();
  float current_decay() const { return decay_; }  // of the last update
  const std::vector<Tensor>& shadow() const { return shadow_; }
  int64_t steps() const { return step_; }
  // Restores a saved shadow (one tensor per parameter) and update count (to resume training).
  void load_state(const std::vector<Tensor>& shadow, int64_t steps);
  // Writes the averaged weights into the parameters.
  void copy_to(const std::vector<Tensor*>& params) const;

 private:
  std::vector<Tensor*> params_;
  std::vector<Tensor> shadow_;
  EmaOptions opt_;
  int64_t step_ = 0;
  float decay_ = 0;
};

// Learning-rate multiplier at optimizer step `step` (0-based), as transformers' schedulers:
// "constant", "constant_with_warmup", "linear" (warm-up then linear decay to 0), "cosine"
// (warm-up then half a cosine to 0).
struct LrSchedule {
  std::string kind = "constant";
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double num_cycles = 0.5;  // cosine
  double factor(int64_t step) const;
};

// Gradient accumulation: the loss of each of `steps` micro-batches is divided by `steps` so
// that their summed gradients equal the gradient of the mean loss; the optimizer steps once
// every `steps` micro-batches.
class GradientAccumulation {
 public:
  explicit GradientAccumulation(int64_t steps);
  Tensor scale_loss(const Tensor& loss) const;  // differentiable
  // Counts one micro-batch; true when the optimizer should step now.
  bool micro_batch_done();
  int64_t steps() const { return steps_; }

 private:
  int64_t steps_, count_ = 0;
};

}  // namespace diffuse::train
