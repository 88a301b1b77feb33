// AdamW, clipping, EMA, learning-rate schedules and gradient accumulation, against their
// definitions computed here in double.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "test_util.h"
#include "train/optim.h"

using namespace diffuse;
namespace F = diffuse::autograd;

namespace {
Tensor leaf(const std::vector<float>& v) {
  Tensor t = Tensor::from_vector(v, {int64_t(v.size())});
  F::set_requires_grad(t);
  return t;
}
void set_grad(Tensor& t, const std::vector<float>& g) {
  F::grad_slot(t) = Tensor::from_vector(g, {int64_t(g.size())});
}
}  // namespace

TEST(AdamW, FollowsTheUpdateRule) {
  Tensor p = leaf({0.5f, -1.f, 2.f}), q = leaf({1.f});
  train::AdamWOptions o;
  o.lr = 0.01f;
  o.weight_decay = 0.1f;
  train::AdamW opt({&p, &q}, o);
  std::vector<double> x{0.5, -1, 2}, m(3), v(3);
  const std::vector<std::vector<float>> grads{{0.1f, -0.2f, 0.3f}, {-0.05f, 0.4f, 0.f}};
  for (size_t s = 0; s < grads.size(); ++s) {
    set_grad(p, grads[s]);  // q has no gradient: left alone
    opt.step();
    for (size_t i = 0; i < 3; ++i) {
      const double g = grads[s][i];
      x[i] *= 1 - 0.01 * 0.1;
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      const double mh = m[i] / (1 - std::pow(0.9, double(s + 1)));
      const double vh = v[i] / (1 - std::pow(0.999, double(s + 1)));
      x[i] -= 0.01 * mh / (std::sqrt(vh) + 1e-8);
    }
  }
  const auto got = p.to_float_vector();
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(got[i], x[i], 1e-6);
  EXPECT_EQ(q.to_float_vector()[0], 1.f);
  EXPECT_EQ(opt.steps(), 2);
  opt.zero_grad();
  EXPECT_FALSE(F::grad(p).defined());
}

TEST(ClipGradNorm, ScalesOnlyAboveTheLimit) {
  Tensor a = leaf({0, 0}), b = leaf({0});
  set_grad(a, {3.f, 0.f});
  set_grad(b, {4.f});
  EXPECT_NEAR(train::clip_grad_norm({&a, &b}, 10.0), 5.0, 1e-9);
  EXPECT_FLOAT_EQ(F::grad(b).to_float_vector()[0], 4.f);
  EXPECT_NEAR(train::clip_grad_norm({&a, &b}, 1.0), 5.0, 1e-9);
  EXPECT_NEAR(F::grad(a).to_float_vector()[0], 3.0 / (5.0 + 1e-6), 1e-6);
  EXPECT_NEAR(F::grad(b).to_float_vector()[0], 4.0 / (5.0 + 1e-6), 1e-6);
}

TEST(Ema, DecayScheduleAndAverage) {
  Tensor p = leaf({1.f});
  train::EmaOptions o;
  o.decay = 0.25f;
  train::Ema ema({&p}, o);
  ema.update();  // first update: decay 0, the shadow becomes the weights
  EXPECT_EQ(ema.current_decay(), 0.f);
  p.data<float>()[0] = 3.f;
  ema.update();  // step 1: min(0.25, 2 / 11)
  EXPECT_FLOAT_EQ(ema.current_decay(), 2.f / 11.f);
  double s = 1.0 - (1.0 - 2.0 / 11.0) * (1.0 - 3.0);
  EXPECT_NEAR(ema.shadow()[0].item(), s, 1e-6);
  p.data<float>()[0] = -1.f;
  ema.update();  // step 2: min(0.25, 3 / 12) = 0.25
  EXPECT_FLOAT_EQ(ema.current_decay(), 0.25f);
  s -= 0.75 * (s + 1.0);
  EXPECT_NEAR(ema.shadow()[0].item(), s, 1e-6);
  Tensor out = Tensor::zeros({1});
  ema.copy_to({&out});
  EXPECT_NEAR(out.item(), s, 1e-6);

  train::EmaOptions w;
  w.use_warmup = true;
  train::Ema warm({&p}, w);
  warm.update();
  warm.update();
  EXPECT_NEAR(warm.current_decay(), 1.0 - std::pow(2.0, -2.0 / 3.0), 1e-6);
}

TEST(LrSchedule, WarmupThenDecay) {
  train::LrSchedule c{"cosine", 10, 110};
  EXPECT_DOUBLE_EQ(c.factor(0), 0.0);
  EXPECT_DOUBLE_EQ(c.factor(5), 0.5);
  EXPECT_DOUBLE_EQ(c.factor(10), 1.0);
  EXPECT_NEAR(c.factor(60), 0.5, 1e-12);
  EXPECT_NEAR(c.factor(35), 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-12);
  EXPECT_NEAR(c.factor(110), 0.0, 1e-12);
  train::LrSchedule l{"linear", 10, 110};
  EXPECT_DOUBLE_EQ(l.factor(60), 0.5);
  EXPECT_DOUBLE_EQ(l.factor(200), 0.0);
  train::LrSchedule k{"constant_with_warmup", 4, 100};
  EXPECT_DOUBLE_EQ(k.factor(1), 0.25);
  EXPECT_DOUBLE_EQ(k.factor(50), 1.0);
  EXPECT_THROW((train::LrSchedule{"bogus", 0, 1}.factor(3)), Error);
}

TEST(GradientAccumulation, MicroBatchesSumToTheFullBatchGradient) {
  const Tensor x = Tensor::from_vector({1, 2, -1, 0.5f, 3, -2, 0, 1}, {4, 2});
  const Tensor y = Tensor::from_vector({1, -1, 2, 0.5f}, {4, 1});
  Tensor w = Tensor::from_vector({0.3f, -0.7f}, {1, 2});
  F::set_requires_grad(w);
  F::backward(F::mse_loss(F::linear(x, w), y));
  const Tensor full = F::grad(w).clone();
  F::zero_grad(w);
  train::GradientAccumulation acc2(2);
  std::vector<bool> steps;
  for (int i = 0; i < 2; ++i) {
    const Tensor xb = x.slice(0, 2 * i, 2 * i + 2), yb = y.slice(0, 2 * i, 2 * i + 2);
    F::backward(acc2.scale_loss(F::mse_loss(F::linear(xb, w), yb)));
    steps.push_back(acc2.micro_batch_done());
  }
  EXPECT_EQ(steps, (std::vector<bool>{false, true}));
  EXPECT_REL_NEAR(F::grad(w), full, 1e-6);
  EXPECT_THROW(train::GradientAccumulation(0), Error);
}
