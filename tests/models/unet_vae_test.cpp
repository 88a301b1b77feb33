// UNet and VAE against the reference, for every model in every form it comes in.
#include <gtest/gtest.h>

#include "io/safetensors.h"
#include "model_forms.h"
#include "pipeline/model_bundle.h"
#include "test_util.h"

using namespace diffuse;

namespace {

class UNetVaeGolden : public testing::TestWithParam<test::ModelForm> {};

TEST_P(UNetVaeGolden, UNetOutputsMatchAtEveryTimestep) {
  const auto& f = GetParam();
  auto ref = io::load_safetensors(f.dir + "/reference.safetensors");
  auto bundle = test::open_form(f);
  const auto& unet = bundle->unet();
  const Tensor& input = ref.at("unet.input");
  const Tensor& context = ref.at("unet.context");
  int checked = 0;
  const std::string prefix = "unet.output.t";
  for (auto& [key, expected] : ref) {
    if (key.rfind(prefix, 0) != 0) continue;
    const float t = std::stof(key.substr(prefix.size()));
    SCOPED_TRACE(key);
    Tensor out = unet.forward(input, std::vector<float>(size_t(input.size(0)), t), context);
    EXPECT_REL_NEAR(out, expected, test::form_tolerance(f));
    ++checked;
  }
  EXPECT_GT(checked, 0) << "no unet.output.t* keys in the reference";
}

TEST_P(UNetVaeGolden, VaeEncodeMatches) {
  const auto& f = GetParam();
  auto ref = io::load_safetensors(f.dir + "/reference.safetensors");
  auto bundle = test::open_form(f);
  auto d = bundle->vae().encode(ref.at("vae.image"));
  EXPECT_REL_NEAR(d.mean, ref.at("vae.encode.mean"), test::form_tolerance(f));
  EXPECT_REL_NEAR(d.logvar, ref.at("vae.encode.logvar"), test::form_tolerance(f));
}

TEST_P(UNetVaeGolden, VaeDecodeMatches) {
  const auto& f = GetParam();
  auto ref = io::load_safetensors(f.dir + "/reference.safetensors");
  auto bundle = test::open_form(f);
  Tensor img = bundle->vae().decode(ref.at("vae.decode.input"));
  EXPECT_REL_NEAR(img, ref.at("vae.decode.output"), test::form_tolerance(f));
  EXPECT_FLOAT_EQ(bundle->vae_config.scaling_factor,
                  f.reference_json.at("vae_scaling_factor").get<float>());
}

TEST_P(UNetVaeGolden, BadShapesAreClearErrors) {
  auto bundle = test::open_form(GetParam());
  const auto& unet = bundle->unet();
  const auto& c = bundle->unet_config;
  Tensor ctx = Tensor::zeros({1, 77, c.cross_attention_dim});
  EXPECT_THROW(unet.forward(Tensor::zeros({1, c.in_channels + 1, 16, 16}), {1.f}, ctx), Error);
  EXPECT_THROW(unet.forward(Tensor::zeros({1, c.in_channels, 16, 16}), {1.f, 2.f}, ctx), Error);
  EXPECT_THROW(unet.forward(Tensor::zeros({1, c.in_channels, 16, 16}), {1.f},
                            Tensor::zeros({1, 77, c.cross_attention_dim + 1})),
               Error);
  EXPECT_THROW(bundle->vae().encode(Tensor::zeros({1, 3, 12, 12})), Error);
}

INSTANTIATE_TEST_SUITE_P(Forms, UNetVaeGolden, testing::ValuesIn(test::all_model_forms()),
                         [](const auto& i) { return test::form_test_name(i.param); });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(UNetVaeGolden);

}  // namespace
