// The tiny CLIP's contrastive step against the reference (training/clip_*): embeddings, logits,
// loss and the gradient of every parameter, logit_scale included.
#include <gtest/gtest.h>

#include "autograd/autograd.h"
#include "io/safetensors.h"
#include "models/clip/clip_vision_model.h"
#include "test_util.h"
#include "train/losses.h"
#include "train/optim.h"
#include "training_ref.h"

using namespace diffuse;

TEST(ClipTraining, ContrastiveLossAndEveryGradientMatch) {
  DF_REQUIRE_REF(json_path, "training/clip_training.json");
  DF_REQUIRE_REF(st_path, "training/clip_training.safetensors");
  DF_REQUIRE_REF(weights_path, "training/clip_tiny_model.safetensors");
  const auto meta = test::read_json_file(json_path);
  const auto ref = io::load_safetensors(st_path);
  models::ClipModel clip(models::ClipModelConfig::from_json(meta.at("config")));
  clip.load_state_dict(io::load_safetensors(weights_path), "CLIP");
  const auto params = train::make_trainable(clip);

  const auto out = clip.forward(ref.at("input_ids"), ref.at("pixel_values"));
  EXPECT_REL_NEAR(out.text_embeds, ref.at("text_embeds"), 1e-5);
  EXPECT_REL_NEAR(out.image_embeds, ref.at("image_embeds"), 1e-5);
  EXPECT_REL_NEAR(out.logits_per_image.contiguous(), ref.at("logits_per_image"), 1e-5);
  const Tensor loss = train::clip_contrastive_loss(out.logits_per_text);
  EXPECT_REL_NEAR(loss.reshape({1}), ref.at("loss"), 1e-5);
  autograd::backward(loss);
  test::expect_grads_match(params, ref, "grad.", 1e-4);
}
