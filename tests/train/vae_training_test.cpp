// One VAE training step (reconstruction + KL) against the reference: losses and every gradient.
#include <gtest/gtest.h>

#include <regex>

#include "autograd/autograd.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "test_util.h"
#include "train/losses.h"
#include "train/optim.h"
#include "training_ref.h"

using namespace diffuse;

TEST(VaeTraining, LossesAndEveryGradientMatch) {
  DF_REQUIRE_REF(json_path, "training/unet_vae_training.json");
  DF_REQUIRE_REF(st_path, "training/unet_vae_training.safetensors");
  const auto meta = test::read_json_file(json_path);
  const std::string model = meta.at("model").get<std::string>();
  DF_REQUIRE_REF(dir, model.substr(0, model.find(' ')) + "/diffusers");
  // "mse(decode(mean + std*eps), image) + W * mean(kl)": the KL weight W
  const std::string desc = meta.at("vae").at("loss").get<std::string>();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(desc, m, std::regex(R"(\+\s*([0-9.eE+-]+)\s*\*\s*mean\(kl\))")))
      << "cannot read the KL weight from '" << desc << "'";
  const float kl_weight = std::stof(m[1].str());

  const auto ref = io::load_safetensors(st_path);
  const auto files = io::open_model(dir);
  models::AutoencoderKL vae(models::VaeConfig::from_json(files.vae_config));
  vae.load_state_dict(files.vae, "VAE");
  const auto params = train::make_trainable(vae);
  const auto l = train::vae_loss(vae, ref.at("images"), ref.at("vae.eps"), kl_weight);
  EXPECT_REL_NEAR(l.reconstruction.reshape({1}), ref.at("vae.rec_loss"), 1e-5);
  EXPECT_REL_NEAR(l.kl.reshape({1}), ref.at("vae.kl"), 1e-5);
  EXPECT_REL_NEAR(l.loss.reshape({1}), ref.at("vae.loss"), 1e-5);
  autograd::backward(l.loss);
  test::expect_grads_match(params, ref, "vae.grad.", 1e-4);
}
