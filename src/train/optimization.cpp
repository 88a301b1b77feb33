#include "train/optimization.h"

#include <limits>

#include "autograd/autograd.h"

namespace diffuse::train {

Optimization::Optimization(std::vector<Tensor*> params, OptimizationOptions o)
    : params_(std::move(params)), o_(o), accum_(o.grad_accumulation) {
  opt_ = std::make_unique<AdamW>(params_, o_.adamw);
  if (o_.ema) ema_ = std::make_unique<Ema>(params_, *o_.ema);
}

TrainStepResult Optimization::backward_and_step(const Tensor& loss) {
  TrainStepResult r;
  r.loss = loss.item();
  autograd::backward(accum_.scale_loss(loss));
  if (!accum_.micro_batch_done()) return r;
  if (o_.comm) o_.comm->average_gradients(params_);
  // The norm is always measured (for the log); clipping only when asked.
  r.grad_norm = clip_grad_norm(
      params_, o_.max_grad_norm > 0 ? o_.max_grad_norm : std::numeric_limits<double>::infinity());
  r.lr = float(double(o_.adamw.lr) * o_.lr_schedule.factor(opt_->steps()));
  opt_->set_lr(r.lr);
  opt_->step();
  opt_->zero_grad();
  if (ema_) ema_->update();
  r.stepped = true;
  return r;
}

}  // namespace diffuse::train
