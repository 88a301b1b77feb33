// The diffusion objective's pieces: schedule, noising, targets, min-SNR weights, offset noise,
// the weighted loss and its gradient.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "test_util.h"
#include "train/diffusion.h"

using namespace diffuse;
namespace F = diffuse::autograd;
using sampling::PredictionType;

namespace {
Tensor ramp(const Shape& s, float a, float b) {
  std::vector<float> v(size_t(shape_numel(s)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = a + b * std::sin(float(i) * 0.37f);
  return Tensor::from_vector(v, s);
}
}  // namespace

TEST(Diffusion, ScheduleAndNoising) {
  const auto s = train::NoiseSchedule::stable_diffusion();
  ASSERT_EQ(s.num_train_timesteps(), 1000);
  EXPECT_NEAR(s.alphas_cumprod[0], 1.0 - 0.00085, 1e-7);
  EXPECT_LT(s.alphas_cumprod[999], s.alphas_cumprod[500]);
  const Tensor x0 = ramp({2, 3, 2, 2}, 0.1f, 1.f), noise = ramp({2, 3, 2, 2}, -0.2f, 0.8f);
  const std::vector<int64_t> t{10, 900};
  const Tensor noisy = train::add_noise(s, x0, noise, t);
  const Tensor v = train::velocity(s, x0, noise, t);
  // alpha^2 + sigma^2 = 1, so x0 = alpha noisy - sigma v
  const auto nv = noisy.to_float_vector(), vv = v.to_float_vector(), xv = x0.to_float_vector();
  for (size_t i = 0; i < nv.size(); ++i) {
    const int64_t ti = t[i / 12];
    EXPECT_NEAR(s.alpha(ti) * nv[i] - s.sigma(ti) * vv[i], xv[i], 1e-5);
  }
  EXPECT_THROW(train::add_noise(s, x0, noise, {1}), Error);
  EXPECT_THROW(train::add_noise(s, x0, noise, {1, 1000}), Error);
  EXPECT_EQ(train::prediction_target(PredictionType::Sample, s, x0, noise, t).raw_data(),
            x0.raw_data());
}

TEST(Diffusion, MinSnrWeights) {
  const auto s = train::NoiseSchedule::stable_diffusion();
  const std::vector<int64_t> t{20, 999};
  const float snr0 = s.snr(20), snr1 = s.snr(999);
  ASSERT_GT(snr0, 5.f);
  ASSERT_LT(snr1, 5.f);
  auto e = train::min_snr_weights(s, t, 5.f, PredictionType::Epsilon);
  EXPECT_FLOAT_EQ(e[0], 5.f / snr0);
  EXPECT_FLOAT_EQ(e[1], 1.f);
  auto v = train::min_snr_weights(s, t, 5.f, PredictionType::VPrediction);
  EXPECT_FLOAT_EQ(v[0], 5.f / (snr0 + 1));
  EXPECT_FLOAT_EQ(v[1], snr1 / (snr1 + 1));
  auto x = train::min_snr_weights(s, t, 5.f, PredictionType::Sample);
  EXPECT_FLOAT_EQ(x[0], 5.f);
  EXPECT_THROW(train::min_snr_weights(s, t, 0.f, PredictionType::Epsilon), Error);
}

TEST(Diffusion, OffsetNoise) {
  const Tensor noise = Tensor::zeros({2, 3, 2, 2});
  const Tensor per = ramp({2, 3, 1, 1}, 0.f, 1.f);
  const auto out = train::offset_noise(noise, per, 0.1f).to_float_vector();
  const auto pv = per.to_float_vector();
  for (size_t i = 0; i < out.size(); ++i) EXPECT_FLOAT_EQ(out[i], 0.1f * pv[i / 4]);
  EXPECT_THROW(train::offset_noise(noise, Tensor::zeros({2, 3}), 0.1f), Error);
}

TEST(Diffusion, WeightedLossAndGradient) {
  Tensor pred = ramp({2, 2, 3}, 0.f, 1.f);
  const Tensor target = ramp({2, 2, 3}, 0.3f, -0.5f);
  F::set_requires_grad(pred);
  const std::vector<float> w{0.25f, 2.f};
  const Tensor loss = train::diffusion_loss(pred, target, w);
  const auto p = pred.to_float_vector(), q = target.to_float_vector();
  double expect = 0;
  std::vector<double> grad(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    const double d = double(p[i]) - double(q[i]), wi = w[i / 6];
    expect += wi * d * d / 6.0 / 2.0;
    grad[i] = wi * 2.0 * d / 6.0 / 2.0;
  }
  EXPECT_NEAR(loss.item(), expect, 1e-6);
  F::backward(loss);
  const auto g = F::grad(pred).to_float_vector();
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], grad[i], 1e-6);
  // unweighted: plain mse
  EXPECT_NEAR(train::diffusion_loss(F::detach(pred), target).item(),
              F::mse_loss(F::detach(pred), target).item(), 1e-7);
}
