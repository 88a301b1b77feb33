// One training step of the tiny SD1 UNet against the reference (training/unet_vae_training.*):
// noising, targets, loss and the gradient of every parameter; three AdamW steps; min-SNR weights.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/autograd.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "models/unet/unet_2d_condition.h"
#include "test_util.h"
#include "train/diffusion.h"
#include "train/optim.h"
#include "training_ref.h"

using namespace diffuse;

namespace {

constexpr double kGradTol = 1e-4;

struct UNetSetup {
  nlohmann::json meta;
  io::TensorMap ref;
  io::ModelFiles files;
  models::UNetConfig config;
  train::NoiseSchedule schedule;
  std::vector<int64_t> timesteps;
};

// The model named by the reference json ("<name> (diffusers folder)"), its schedule and the data.
bool load_setup(UNetSetup& s, std::string& why) {
  const std::string json_path = test::reference_path("training/unet_vae_training.json");
  const std::string st_path = test::reference_path("training/unet_vae_training.safetensors");
  if (json_path.empty() || st_path.empty()) {
    why = "training/unet_vae_training.{json,safetensors}";
    return false;
  }
  s.meta = test::read_json_file(json_path);
  const std::string model = s.meta.at("model").get<std::string>();
  const std::string dir = test::reference_path(model.substr(0, model.find(' ')) + "/diffusers");
  if (dir.empty()) {
    why = "the model folder of '" + model + "'";
    return false;
  }
  s.ref = io::load_safetensors(st_path);
  s.files = io::open_model(dir);
  s.config = models::UNetConfig::from_json(s.files.unet_config);
  const auto ch = models::UNetConfig::infer_channels(s.files.unet);
  s.config.in_channels = ch.in_channels;
  s.config.out_channels = ch.out_channels;
  s.schedule = train::NoiseSchedule::from_config(
      sampling::parse_scheduler_config(s.files.scheduler_config.dump()));
  const Tensor t = s.ref.at("timesteps").contiguous();
  s.timesteps.assign(t.data<int64_t>(), t.data<int64_t>() + t.numel());
  return true;
}

std::unique_ptr<models::UNet2DConditionModel> trainable_unet(const UNetSetup& s,
                                                             std::vector<nn::Module::ParamRef>* p) {
  auto unet = std::make_unique<models::UNet2DConditionModel>(s.config);
  unet->load_state_dict(s.files.unet, "UNet");
  *p = train::make_trainable(*unet);
  return unet;
}

std::vector<float> as_float(const std::vector<int64_t>& t) {
  return {t.begin(), t.end()};
}

#define DF_SETUP(s)                                             \
  UNetSetup s;                                                  \
  {                                                             \
    std::string why;                                            \
    if (!load_setup(s, why)) GTEST_SKIP() << "absent: " << why; \
  }

}  // namespace

TEST(UNetTraining, NoisingAndTargetsMatch) {
  DF_SETUP(s);
  const Tensor& x0 = s.ref.at("x0");
  const Tensor& noise = s.ref.at("noise");
  EXPECT_REL_NEAR(train::add_noise(s.schedule, x0, noise, s.timesteps), s.ref.at("noisy"), 1e-6);
  EXPECT_REL_NEAR(train::velocity(s.schedule, x0, noise, s.timesteps), s.ref.at("v.target"), 1e-6);
}

TEST(UNetTraining, MinSnrWeightsMatch) {
  DF_SETUP(s);
  // The reference's gamma (diffusers' recommended 5 unless the json says otherwise).
  const float gamma = s.meta.value("minsnr_gamma", 5.0f);
  const auto w =
      train::min_snr_weights(s.schedule, s.timesteps, gamma, sampling::PredictionType::Epsilon);
  const auto ref = s.ref.at("minsnr.weights").to_float_vector();
  ASSERT_EQ(w.size(), ref.size());
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(w[i], ref[i], 1e-5 * std::max(1.f, ref[i]));
}

TEST(UNetTraining, EpsilonLossAndEveryGradientMatch) {
  DF_SETUP(s);
  std::vector<nn::Module::ParamRef> params;
  auto unet = trainable_unet(s, &params);
  const Tensor noisy = train::add_noise(s.schedule, s.ref.at("x0"), s.ref.at("noise"), s.timesteps);
  const Tensor pred = unet->forward(noisy, as_float(s.timesteps), s.ref.at("context"));
  const Tensor loss = train::diffusion_loss(pred, s.ref.at("noise"));
  EXPECT_REL_NEAR(loss.reshape({1}), s.ref.at("eps.loss"), 1e-5);
  autograd::backward(loss);
  test::expect_grads_match(params, s.ref, "eps.grad.", kGradTol);
}

TEST(UNetTraining, CheckpointedGradientsMatch) {
  DF_SETUP(s);
  std::vector<nn::Module::ParamRef> params;
  auto unet = trainable_unet(s, &params);
  unet->set_gradient_checkpointing(true);
  const Tensor noisy = train::add_noise(s.schedule, s.ref.at("x0"), s.ref.at("noise"), s.timesteps);
  const Tensor loss = train::diffusion_loss(
      unet->forward(noisy, as_float(s.timesteps), s.ref.at("context")), s.ref.at("noise"));
  EXPECT_REL_NEAR(loss.reshape({1}), s.ref.at("eps.loss"), 1e-5);
  // The graph keeps a node per segment instead of one per op inside it.
  const int64_t kept = autograd::graph_size(loss);
  {
    unet->set_gradient_checkpointing(false);
    const Tensor full = unet->forward(noisy, as_float(s.timesteps), s.ref.at("context"));
    EXPECT_LT(4 * kept, autograd::graph_size(full)) << kept << " nodes with checkpointing";
    unet->set_gradient_checkpointing(true);
  }
  autograd::backward(loss);
  test::expect_grads_match(params, s.ref, "eps.grad.", kGradTol);
}

TEST(UNetTraining, Bf16AutocastStaysClose) {
  DF_SETUP(s);
  std::vector<nn::Module::ParamRef> params;
  auto unet = trainable_unet(s, &params);
  const Tensor noisy = train::add_noise(s.schedule, s.ref.at("x0"), s.ref.at("noise"), s.timesteps);
  Tensor pred;
  {
    autograd::AutocastGuard bf16;
    pred = unet->forward(noisy, as_float(s.timesteps), s.ref.at("context"));
  }
  const Tensor loss = train::diffusion_loss(pred, s.ref.at("noise"));
  const double le = std::abs(loss.item() / s.ref.at("eps.loss").item() - 1.0);
  EXPECT_GT(le, 0.0);  // bf16 products did run
  EXPECT_LT(le, 1e-2);
  autograd::backward(loss);
  double num = 0, den = 0;  // over every gradient at once
  for (const auto& p : params) {
    const auto a = autograd::grad(*p.tensor).to_float_vector();
    const auto r = s.ref.at("eps.grad." + p.name).to_float_vector();
    for (size_t i = 0; i < a.size(); ++i) {
      num += (double(a[i]) - r[i]) * (double(a[i]) - r[i]);
      den += double(r[i]) * r[i];
    }
  }
  std::printf("[ info ] bf16 autocast: loss error %.3g, gradient error %.3g\n", le,
              std::sqrt(num / den));
  EXPECT_LT(std::sqrt(num / den), 5e-2);
}

TEST(UNetTraining, VPredictionLossMatches) {
  DF_SETUP(s);
  std::vector<nn::Module::ParamRef> params;
  auto unet = trainable_unet(s, &params);
  const Tensor& x0 = s.ref.at("x0");
  const Tensor& noise = s.ref.at("noise");
  const Tensor target = train::prediction_target(sampling::PredictionType::VPrediction, s.schedule,
                                                 x0, noise, s.timesteps);
  EXPECT_REL_NEAR(target, s.ref.at("v.target"), 1e-6);
  const Tensor noisy = train::add_noise(s.schedule, x0, noise, s.timesteps);
  const Tensor loss = train::diffusion_loss(
      unet->forward(noisy, as_float(s.timesteps), s.ref.at("context")), target);
  EXPECT_REL_NEAR(loss.reshape({1}), s.ref.at("v.loss"), 1e-5);
  autograd::backward(loss);
  for (const auto& p : params) ASSERT_TRUE(autograd::grad(*p.tensor).defined()) << p.name;
}

TEST(UNetTraining, ThreeAdamWStepsMatch) {
  DF_SETUP(s);
  std::vector<nn::Module::ParamRef> params;
  auto unet = trainable_unet(s, &params);
  const auto& a = s.meta.at("adamw");
  train::AdamWOptions o;
  o.lr = a.at("lr").get<float>();
  o.beta1 = a.at("betas")[0].get<float>();
  o.beta2 = a.at("betas")[1].get<float>();
  o.eps = a.at("eps").get<float>();
  o.weight_decay = a.at("weight_decay").get<float>();
  train::AdamW opt(train::slots(params), o);
  const int steps = a.at("steps").get<int>();
  const Tensor noisy = train::add_noise(s.schedule, s.ref.at("x0"), s.ref.at("noise"), s.timesteps);
  std::vector<float> losses;
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    const Tensor loss = train::diffusion_loss(
        unet->forward(noisy, as_float(s.timesteps), s.ref.at("context")), s.ref.at("noise"));
    losses.push_back(loss.item());
    autograd::backward(loss);
    opt.step();
  }
  const auto ref_losses = s.ref.at("adamw.losses").to_float_vector();
  ASSERT_EQ(losses.size(), ref_losses.size());
  for (size_t i = 0; i < losses.size(); ++i)
    EXPECT_NEAR(losses[i], ref_losses[i], 1e-5 * ref_losses[i]);
  int watched = 0;
  for (const auto& p : params) {
    auto it = s.ref.find("adamw.after" + std::to_string(steps) + "." + p.name);
    if (it == s.ref.end()) continue;
    SCOPED_TRACE(p.name);
    // Adam normalizes each element's step, so elements whose gradient is rounding noise (e.g.
    // key-projection directions the softmax cannot see) move by about lr either way: 1e-4.
    EXPECT_REL_NEAR(*p.tensor, it->second, 1e-4);
    ++watched;
  }
  EXPECT_EQ(watched, int(s.meta.at("watched").size()));
}
