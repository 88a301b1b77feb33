#include "train/optim.h"

#include <algorithm>
#include <cmath>

#include "autograd/functions.h"
#include "autograd/kernels/kernels.h"
#include "core/parallel.h"

namespace diffuse::train {

std::vector<nn::Module::ParamRef> make_trainable(nn::Module& m) {
  auto params = m.named_parameters();
  for (auto& p : params) {
    DF_CHECK(p.tensor->defined(), "make_trainable: parameter ", p.name, " is not loaded");
    *p.tensor = p.tensor->to(DType::F32).clone();  // owned, contiguous f32
    autograd::set_requires_grad(*p.tensor);
  }
  return params;
}

std::vector<Tensor*> slots(const std::vector<nn::Module::ParamRef>& params) {
  std::vector<Tensor*> out;
  for (auto& p : params) out.push_back(p.tensor);
  return out;
}

// ---- AdamW ----

AdamW::AdamW(std::vector<Tensor*> params, AdamWOptions o) : params_(std::move(params)), opt_(o) {
  for (Tensor* p : params_) {
    DF_CHECK(p && p->dtype() == DType::F32 && p->is_contiguous(),
             "AdamW: parameters must be contiguous f32 tensors");
    m_.push_back(Tensor::zeros(p->shape()));
    v_.push_back(Tensor::zeros(p->shape()));
  }
}

void AdamW::step() {
  ++step_;
  const double lr = opt_.lr;
  const float decay = float(1.0 - lr * double(opt_.weight_decay));
  const float w1 = float(1.0 - double(opt_.beta1));  // lerp weight
  const float b2 = opt_.beta2, w2 = float(1.0 - double(opt_.beta2));
  const double bc1 = 1.0 - std::pow(double(opt_.beta1), double(step_));
  const double bc2 = 1.0 - std::pow(double(opt_.beta2), double(step_));
  const float step_size = float(lr / bc1);
  const float bc2_sqrt = float(std::sqrt(bc2));
  const float eps = opt_.eps;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor g = autograd::grad(*params_[i]);
    if (!g.defined()) continue;
    float* p = params_[i]->data<float>();
    const float* gp = g.data<float>();
    float* m = m_[i].data<float>();
    float* v = v_[i].data<float>();
    parallel_for(g.numel(), 16384, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        p[j] *= decay;
        m[j] = w1 < 0.5f ? m[j] + w1 * (gp[j] - m[j]) : gp[j] - (gp[j] - m[j]) * (1.f - w1);
        v[j] = v[j] * b2 + w2 * gp[j] * gp[j];
        const float denom = std::sqrt(v[j]) / bc2_sqrt + eps;
        p[j] += -step_size * (m[j] / denom);
      }
    });
  }
}

namespace {

void load_tensors(std::vector<Tensor>& dst, const std::vector<Tensor>& src, const char* what) {
  DF_CHECK(src.size() == dst.size(), what, ": ", src.size(), " saved tensors for ", dst.size(),
           " parameters");
  for (size_t i = 0; i < dst.size(); ++i) {
    DF_CHECK(src[i].shape() == dst[i].shape(), what, " ", i, ": saved ", src[i].desc(),
             ", parameter shape ", dst[i].desc());
    dst[i] = src[i].to(DType::F32).contiguous().clone();
  }
}

}  // namespace

void AdamW::load_state(const std::vector<Tensor>& exp_avg, const std::vector<Tensor>& exp_avg_sq,
                       int64_t steps) {
  load_tensors(m_, exp_avg, "AdamW exp_avg");
  load_tensors(v_, exp_avg_sq, "AdamW exp_avg_sq");
  step_ = steps;
}

void AdamW::zero_grad() {
  for (Tensor* p : params_) autograd::zero_grad(*p);
}

// ---- clipping ----

double clip_grad_norm(const std::vector<Tensor*>& params, double max_norm) {
  double sq = 0;
  for (Tensor* p : params) {
    const Tensor g = autograd::grad(*p);
    if (g.defined()) sq += autograd::kernels::sum_squares(g);
  }
  const double norm = std::sqrt(sq);
  const double coef = std::min(1.0, max_norm / (norm + 1e-6));
  if (coef >= 1.0) return norm;  // a scale by 1 changes nothing
  for (Tensor* p : params) {
    const auto& m = p->autograd_meta();
    if (m && m->grad.defined()) autograd::kernels::scale_inplace(m->grad, float(coef));
  }
  return norm;
}

// ---- EMA ----

Ema::Ema(const std::vector<Tensor*>& params, EmaOptions o) : params_(params), opt_(o) {
  for (Tensor* p : params_) shadow_.push_back(p->to(DType::F32).clone());
}

void Ema::update() {
  ++step_;
  const int64_t s = std::max<int64_t>(0, step_ - opt_.update_after_step - 1);
  double d = 0;
  if (s > 0) {
    d = opt_.use_warmup
            ? 1.0 - std::pow(1.0 + double(s) / double(opt_.inv_gamma), -double(opt_.power))
            : (1.0 + double(s)) / (10.0 + double(s));
    d = std::max(std::min(d, double(opt_.decay)), double(opt_.min_decay));
  }
  decay_ = float(d);
  const float one_minus = float(1.0 - d);
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor src = params_[i]->contiguous();
    const float* p = src.data<float>();
    float* sh = shadow_[i].data<float>();
    parallel_for(src.numel(), 16384, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) sh[j] -= one_minus * (sh[j] - p[j]);
    });
  }
}

void Ema::load_state(const std::vector<Tensor>& shadow, int64_t steps) {
  load_tensors(shadow_, shadow, "EMA shadow");
  step_ = steps;
}

void Ema::copy_to(const std::vector<Tensor*>& params) const {
  DF_CHECK(params.size() == shadow_.size(), "Ema::copy_to: ", params.size(), " parameters for ",
           shadow_.size(), " averages");
  for (size_t i = 0; i < params.size(); ++i) params[i]->copy_from(shadow_[i]);
}

// ---- learning rate ----

double LrSchedule::factor(int64_t step) const {
  if (kind == "constant") return 1.0;
  if (step < warmup_steps) return double(step) / double(std::max<int64_t>(1, warmup_steps));
  if (kind == "constant_with_warmup") return 1.0;
  const double after = double(step - warmup_steps);
  const double span = double(std::max<int64_t>(1, total_steps - warmup_steps));
  if (kind == "linear") return std::max(0.0, double(total_steps - step) / span);
  if (kind == "cosine") {
    const double progress = after / span;
    return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * num_cycles * 2.0 * progress)));
  }
  DF_FAIL("unknown learning-rate schedule '", kind,
          "' (expected constant, constant_with_warmup, linear or cosine)");
}

// ---- accumulation ----

GradientAccumulation::GradientAccumulation(int64_t steps) : steps_(steps) {
  DF_CHECK(steps >= 1, "gradient accumulation steps must be >= 1, got ", steps);
}

Tensor GradientAccumulation::scale_loss(const Tensor& loss) const {
  return steps_ == 1 ? loss : autograd::scale(loss, 1.0f / float(steps_));
}

bool GradientAccumulation::micro_batch_done() {
  if (++count_ < steps_) return false;
  count_ = 0;
  return true;
}

}  // namespace diffuse::train
