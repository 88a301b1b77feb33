// The optimizer side of a training loop, for any loss: backward of each micro-batch's loss
// (scaled for gradient accumulation) and, every `grad_accumulation` micro-batches, clipping,
// the learning-rate schedule, an AdamW step and an EMA update.
#pragma once
#include <memory>
#include <optional>

#include "train/distributed.h"
#include "train/optim.h"

namespace diffuse::train {

struct OptimizationOptions {
  AdamWOptions adamw;             // adamw.lr is the peak learning rate
  LrSchedule lr_schedule;         // multiplier of adamw.lr per optimizer step
  int64_t grad_accumulation = 1;  // micro-batches per optimizer step
  double max_grad_norm = 0;       // 0: no clipping
  std::optional<EmaOptions> ema;  // set: keep an EMA of the weights
  // Data parallel: gradients are averaged over its processes before clipping (null: one process).
  Communicator* comm = nullptr;
};

struct TrainStepResult {
  float loss = 0;        // of this micro-batch (unscaled)
  bool stepped = false;  // the optimizer stepped after this micro-batch
  double grad_norm = 0;  // global norm of the (averaged) gradients before clipping, when stepped
  float lr = 0;          // learning rate of the optimizer step, when stepped
};

class Optimization {
 public:
  Optimization(std::vector<Tensor*> params, OptimizationOptions o);
  // Back-propagates `loss` (a scalar of this micro-batch) and steps when the batch is complete.
  TrainStepResult backward_and_step(const Tensor& loss);

  AdamW& optimizer() { return *opt_; }
  const Ema* ema() const { return ema_.get(); }
  Ema* ema() { return ema_.get(); }
  int64_t optimizer_steps() const { return opt_->steps(); }

 private:
  std::vector<Tensor*> params_;
  OptimizationOptions o_;
  std::unique_ptr<AdamW> opt_;
  std::unique_ptr<Ema> ema_;
  GradientAccumulation accum_;
};

}  // namespace diffuse::train
