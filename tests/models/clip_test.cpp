// CLIP text encoder against the reference, for every model in every form it comes in.
#include <gtest/gtest.h>

#include "io/safetensors.h"
#include "model_forms.h"
#include "pipeline/model_bundle.h"
#include "test_util.h"

using namespace diffuse;

namespace {

class ClipGolden : public testing::TestWithParam<test::ModelForm> {};

TEST_P(ClipGolden, EncoderOutputsMatch) {
  const auto& f = GetParam();
  auto ref = io::load_safetensors(f.dir + "/reference.safetensors");
  auto bundle = test::open_form(f);
  const auto& te = bundle->text_encoder();
  auto out = te.forward(ref.at("text.input_ids"));
  const double tol = test::form_tolerance(f);
  for (size_t i = 0; i < out.hidden_states.size(); ++i) {
    std::string key = "text.hidden_states." + std::to_string(i);
    ASSERT_TRUE(ref.count(key)) << key;
    SCOPED_TRACE(key);
    EXPECT_REL_NEAR(out.hidden_states[i], ref.at(key), tol);
  }
  EXPECT_FALSE(ref.count("text.hidden_states." + std::to_string(out.hidden_states.size())))
      << "the reference has more hidden states than the model";
  EXPECT_REL_NEAR(out.last_hidden_state, ref.at("text.last_hidden_state"), tol);
  EXPECT_REL_NEAR(out.pooler_output, ref.at("text.pooler_output"), tol);
}

TEST_P(ClipGolden, PromptEmbedsAndClipSkipMatch) {
  const auto& f = GetParam();
  auto ref = io::load_safetensors(f.dir + "/reference.safetensors");
  auto prompts = f.reference_json.at("prompts");
  auto bundle = test::open_form(f);
  const double tol = test::form_tolerance(f);
  // The tokenizer reproduces the reference ids of both prompts.
  Tensor ids = ref.at("text.input_ids");
  for (int64_t i = 0; i < 2; ++i) {
    Tensor got = bundle->token_ids(prompts[size_t(i)].get<std::string>());
    EXPECT_EQ(got.to_float_vector(), ids.select(0, i).to_float_vector()) << "prompt " << i;
  }
  const int64_t skip = bundle->default_clip_skip();
  EXPECT_REL_NEAR(bundle->encode_prompt(prompts[0].get<std::string>(), skip),
                  ref.at("pipe.prompt_embeds"), tol);
  EXPECT_REL_NEAR(bundle->encode_prompt(prompts[1].get<std::string>(), skip),
                  ref.at("pipe.negative_prompt_embeds"), tol);
  // diffusers' clip_skip=1 is the block before the default one.
  EXPECT_REL_NEAR(bundle->encode_prompt(prompts[0].get<std::string>(), skip + 1),
                  ref.at("pipe.prompt_embeds_clip_skip1"), tol);
}

TEST_P(ClipGolden, ClipSkipOutOfRangeIsAClearError) {
  auto bundle = test::open_form(GetParam());
  Tensor ids = bundle->token_ids("a cat");
  EXPECT_THROW(bundle->text_encoder().encode(ids, 0), Error);
  EXPECT_THROW(bundle->text_encoder().encode(ids, bundle->text_config.published_layers() + 1),
               Error);
  if (bundle->text_config.unused_published_layers > 0) {
    // SD2 does not use its encoder's last block: clip skip 1 is refused, not silently shifted.
    EXPECT_THROW(bundle->text_encoder().encode(ids, 1), Error);
  }
}

TEST_P(ClipGolden, PadTokenTypedInAPromptIsItsSpecialToken) {
  auto bundle = test::open_form(GetParam());
  const int64_t pad = bundle->pad_token_id();
  if (pad == bundle->tokenizer().eos_id()) GTEST_SKIP() << "pads with the end token";
  // As transformers does once a tokenizer_config names a pad token: "x!!" -> x, pad, pad.
  const std::string tok = bundle->tokenizer().id_to_token(pad);
  auto ids = bundle->token_ids("x" + tok + tok).to_float_vector();
  EXPECT_EQ(ids[2], float(pad));
  EXPECT_EQ(ids[3], float(pad));
  EXPECT_EQ(ids[4], float(bundle->tokenizer().eos_id()));
}

TEST(ClipGoldenSet, HasModels) {
  if (test::reference_dir().empty() || test::reference_models().empty())
    GTEST_SKIP() << "no reference models in " << test::reference_dir();
  EXPECT_FALSE(test::all_model_forms().empty());
}

INSTANTIATE_TEST_SUITE_P(Forms, ClipGolden, testing::ValuesIn(test::all_model_forms()),
                         [](const auto& i) { return test::form_test_name(i.param); });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ClipGolden);

}  // namespace
