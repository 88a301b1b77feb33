// Training loops of the VAE and of CLIP on small random models: the generic Optimization with
// their losses learns (fp32 and bf16 autocast).
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "models/clip/clip_vision_model.h"
#include "train/losses.h"
#include "train/optimization.h"
#include "train_test_util.h"

using namespace diffuse;
namespace F = diffuse::autograd;

class ModelTraining : public testing::TestWithParam<bool> {};  // bf16 autocast?

TEST_P(ModelTraining, VaeLearnsToReconstruct) {
  models::VaeConfig c;
  c.block_out_channels = {8, 16};
  c.layers_per_block = 1;
  c.norm_num_groups = 4;
  models::AutoencoderKL vae(c);
  test::randomize_parameters(vae, 10);
  train::OptimizationOptions o;
  o.adamw.lr = 3e-3f;
  train::Optimization opt(train::slots(train::make_trainable(vae)), o);
  const Tensor images = F::clamp(test::seeded_randn({2, 3, 16, 16}, 1, 0.5f), -1.f, 1.f);
  const Tensor noise = test::seeded_randn({2, 4, 8, 8}, 2);
  std::vector<float> losses;
  for (int i = 0; i < 25; ++i) {
    Tensor loss;
    {
      F::AutocastGuard cast(GetParam());
      loss = train::vae_loss(vae, images, noise, 1e-6f).loss;
    }
    auto r = opt.backward_and_step(loss);
    ASSERT_TRUE(std::isfinite(r.loss));
    losses.push_back(r.loss);
  }
  EXPECT_LT(losses.back(), 0.7f * losses.front()) << losses.front() << " -> " << losses.back();
}

TEST_P(ModelTraining, ClipLearnsToMatchPairs) {
  models::ClipModelConfig c;
  c.text.vocab_size = 50;
  c.text.hidden_size = 16;
  c.text.intermediate_size = 32;
  c.text.num_hidden_layers = 1;
  c.text.num_attention_heads = 2;
  c.text.max_position_embeddings = 8;
  c.text.eos_token_id = 49;
  c.vision.hidden_size = 16;
  c.vision.intermediate_size = 32;
  c.vision.num_hidden_layers = 1;
  c.vision.num_attention_heads = 2;
  c.vision.image_size = 8;
  c.vision.patch_size = 4;
  c.projection_dim = 8;
  models::ClipModel clip(c);
  test::randomize_parameters(clip, 20);
  clip.logit_scale = Tensor::full({}, 2.6592f);
  train::OptimizationOptions o;
  o.adamw.lr = 3e-3f;
  train::Optimization opt(train::slots(train::make_trainable(clip)), o);
  const Tensor ids = Tensor::from_i64({3,  7,  49, 49, 49, 49, 49, 49,  //
                                       5,  2,  9,  49, 49, 49, 49, 49,  //
                                       11, 49, 49, 49, 49, 49, 49, 49,  //
                                       4,  4,  8,  1,  49, 49, 49, 49},
                                      {4, 8});
  const Tensor pixels = test::seeded_randn({4, 3, 8, 8}, 3);
  std::vector<float> losses;
  for (int i = 0; i < 80; ++i) {
    Tensor loss;
    {
      F::AutocastGuard cast(GetParam());
      loss = train::clip_contrastive_loss(clip.forward(ids, pixels).logits_per_text);
    }
    losses.push_back(opt.backward_and_step(loss).loss);
  }
  EXPECT_LT(losses.back(), 0.25f * losses.front()) << testing::PrintToString(losses);
  EXPECT_NE(clip.logit_scale.item(), 2.6592f);  // the temperature is trained too
}

INSTANTIATE_TEST_SUITE_P(Precision, ModelTraining, testing::Values(false, true),
                         [](const auto& i) { return i.param ? "bf16" : "fp32"; });
