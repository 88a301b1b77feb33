// The UNet trainer on a small random UNet: it learns, and every option (accumulation, EMA,
// clipping, schedules, min-SNR, v-prediction, offset noise, bf16 autocast, checkpointing) runs.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "test_util.h"
#include "train/unet_trainer.h"
#include "train_test_util.h"

using namespace diffuse;
namespace F = diffuse::autograd;

namespace {

struct Batch {
  Tensor x0 = test::seeded_randn({2, 4, 8, 8}, 100), context = test::seeded_randn({2, 5, 8}, 101);
  Tensor noise = test::seeded_randn({2, 4, 8, 8}, 102);
  std::vector<int64_t> t{100, 700};
};

}  // namespace

TEST(UNetTrainer, LearnsAFixedBatch) {
  auto unet = test::small_random_unet(1);
  train::UNetTrainOptions o;
  o.adamw.lr = 3e-3f;
  train::UNetTrainer tr(*unet, train::NoiseSchedule::stable_diffusion(), o);
  Batch b;
  std::vector<float> losses;
  for (int i = 0; i < 30; ++i) {
    auto r = tr.step(b.x0, b.context, b.noise, b.t);
    EXPECT_TRUE(r.stepped);
    losses.push_back(r.loss);
  }
  EXPECT_LT(losses.back(), 0.8f * losses.front()) << losses.front() << " -> " << losses.back();
  EXPECT_EQ(tr.optimizer_steps(), 30);
}

TEST(UNetTrainer, SeededRunsRepeat) {
  Batch b;
  std::vector<float> runs[2];
  for (auto& losses : runs) {
    auto unet = test::small_random_unet(2);
    train::UNetTrainOptions o;
    o.seed = 7;
    train::UNetTrainer tr(*unet, train::NoiseSchedule::stable_diffusion(), o);
    for (int i = 0; i < 3; ++i) losses.push_back(tr.step(b.x0, b.context).loss);
  }
  EXPECT_EQ(runs[0], runs[1]);
  EXPECT_NE(runs[0][0], runs[0][1]);  // fresh noise and timesteps each step
}

TEST(UNetTrainer, AccumulationEmaAndSchedule) {
  auto unet = test::small_random_unet(3);
  train::UNetTrainOptions o;
  o.grad_accumulation = 2;
  o.lr_schedule = {"cosine", 2, 4};
  o.ema = train::EmaOptions{};
  train::UNetTrainer tr(*unet, train::NoiseSchedule::stable_diffusion(), o);
  Batch b;
  std::vector<bool> stepped;
  std::vector<float> lrs;
  for (int i = 0; i < 8; ++i) {
    auto r = tr.step(b.x0, b.context, b.noise, b.t);
    stepped.push_back(r.stepped);
    if (r.stepped) lrs.push_back(r.lr);
  }
  EXPECT_EQ(stepped, (std::vector<bool>{false, true, false, true, false, true, false, true}));
  ASSERT_EQ(lrs.size(), 4u);
  EXPECT_FLOAT_EQ(lrs[0], 0.f);  // warm-up starts at 0
  EXPECT_FLOAT_EQ(lrs[1], 0.5f * o.adamw.lr);
  EXPECT_FLOAT_EQ(lrs[2], o.adamw.lr);
  EXPECT_NEAR(lrs[3], 0.5f * o.adamw.lr, 1e-9);
  ASSERT_NE(tr.ema(), nullptr);
  // the average trails the weights
  const Tensor& w = *tr.params()[0].tensor;
  EXPECT_GT(test::rel_error(tr.ema()->shadow()[0], w), 0.0);
  EXPECT_LT(test::rel_error(tr.ema()->shadow()[0], w), 0.1);
}

TEST(UNetTrainer, EveryOptionTogether) {
  auto unet = test::small_random_unet(4);
  train::UNetTrainOptions o;
  o.adamw.lr = 3e-3f;
  o.max_grad_norm = 0.5;
  o.min_snr_gamma = 5.f;
  o.noise_offset = 0.05f;
  o.prediction = sampling::PredictionType::VPrediction;
  o.bf16 = true;
  o.gradient_checkpointing = true;
  train::UNetTrainer tr(*unet, train::NoiseSchedule::stable_diffusion(), o);
  Batch b;
  std::vector<float> losses;
  for (int i = 0; i < 30; ++i) {
    auto r = tr.step(b.x0, b.context, b.noise, b.t);
    ASSERT_TRUE(std::isfinite(r.loss));
    EXPECT_GT(r.grad_norm, 0.0);
    losses.push_back(r.loss);
  }
  EXPECT_LT(losses.back(), 0.8f * losses.front()) << losses.front() << " -> " << losses.back();
}

TEST(Autocast, Bf16ProductsWithF32Gradients) {
  auto unet = test::small_random_unet(5);
  Batch b;
  const std::vector<float> tf{100.f, 700.f};
  std::vector<Tensor> grads[2];
  Tensor outs[2];
  for (int bf16 = 0; bf16 < 2; ++bf16) {
    for (auto& p : unet->named_parameters()) {
      F::set_requires_grad(*p.tensor);
      F::zero_grad(*p.tensor);
    }
    F::AutocastGuard cast(bf16 == 1);
    outs[bf16] = unet->forward(b.x0, tf, b.context);
    F::backward(F::mse_loss(outs[bf16], b.noise));
    for (auto& p : unet->named_parameters()) grads[bf16].push_back(F::grad(*p.tensor));
  }
  // bf16 products: close to f32, but not equal
  const double e = test::rel_error(outs[1], outs[0]);
  EXPECT_GT(e, 1e-5);
  EXPECT_LT(e, 3e-2);
  double num = 0, den = 0;
  for (size_t i = 0; i < grads[0].size(); ++i) {
    ASSERT_TRUE(grads[1][i].defined());
    ASSERT_EQ(grads[1][i].dtype(), DType::F32);
    const auto a = grads[1][i].to_float_vector(), r = grads[0][i].to_float_vector();
    for (size_t j = 0; j < a.size(); ++j) {
      num += (double(a[j]) - r[j]) * (double(a[j]) - r[j]);
      den += double(r[j]) * r[j];
    }
  }
  EXPECT_LT(std::sqrt(num / den), 5e-2);
}
