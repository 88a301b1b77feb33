// The bf16 path checked against the exact fp32 path on every reference model (its single-file
// and diffusers forms, whose matrices are stored in f16 and f32): the VAE decodes the
// reference latents to an image within 35 dB PSNR of the fp32 image, and the UNet and text
// encoder outputs stay within a few percent. fp32 stays the default. q8_0 GGUF files generate
// the float model's image within 30 dB PSNR.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "io/safetensors.h"
#include "model_forms.h"
#include "ops/ops.h"
#include "ops/profile.h"
#include "pipeline/generate.h"
#include "pipeline/model_bundle.h"
#include "test_util.h"

using namespace diffuse;

namespace {

// PSNR in dB of two images in [-1, 1], mapped to [0, 1] and clamped as when saved.
double psnr(const Tensor& a, const Tensor& b) {
  auto x = a.to_float_vector(), y = b.to_float_vector();
  EXPECT_EQ(x.size(), y.size());
  double se = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    const double u = std::clamp((double(x[i]) + 1) / 2, 0.0, 1.0);
    const double v = std::clamp((double(y[i]) + 1) / 2, 0.0, 1.0);
    se += (u - v) * (u - v);
  }
  const double mse = se / double(std::max<size_t>(x.size(), 1));
  return mse == 0 ? INFINITY : 10 * std::log10(1.0 / mse);
}

// max |a - b| / max |b|
double rel_err(const Tensor& a, const Tensor& b) {
  auto x = a.to_float_vector(), y = b.to_float_vector();
  double m = 1e-30, e = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    m = std::max(m, std::abs(double(y[i])));
    e = std::max(e, std::abs(double(x[i]) - double(y[i])));
  }
  return e / m;
}

std::unique_ptr<pipeline::ModelBundle> open_with(const test::ModelForm& f, pipeline::Precision p) {
  pipeline::BundleOptions opt;
  opt.config_dir = f.config_dir;
  opt.data_dir = test::data_dir();
  opt.precision = p;
  return pipeline::ModelBundle::open(f.path, opt);
}

std::vector<test::ModelForm> float_forms() {
  std::vector<test::ModelForm> out;
  for (auto& f : test::all_model_forms())
    if (f.kind == "safetensors" || f.kind == "diffusers") out.push_back(f);
  return out;
}

class PrecisionGolden : public testing::TestWithParam<test::ModelForm> {};

TEST_P(PrecisionGolden, Bf16MatchesFp32) {
  const auto& f = GetParam();
  auto ref = io::load_safetensors(f.dir + "/reference.safetensors");
  auto exact = open_with(f, pipeline::Precision::Fp32);
  auto fast = open_with(f, pipeline::Precision::Bf16);
  EXPECT_EQ(exact->precision(), pipeline::Precision::Fp32);
  EXPECT_EQ(fast->precision(), pipeline::Precision::Bf16);
  EXPECT_EQ(pipeline::ModelBundle::open(f.path, {f.config_dir, test::data_dir()})->precision(),
            pipeline::Precision::Fp32);  // the library default is exact

  // bf16 keeps each stored matrix where it lies (memory-mapped, whatever its dtype): no 16-bit
  // copy is held beside the packed one.
  for (const auto& p : fast->unet().named_parameters()) {
    if (p.tensor->dim() < 2) continue;
    EXPECT_EQ(p.tensor->raw_data(), fast->files.unet.at(p.name).raw_data()) << p.name;
  }

  // fp32 reproduces the reference; bf16 decodes the same latents to nearly the same image.
  const Tensor& z = ref.at("vae.decode.input");
  Tensor img32 = exact->vae().decode(z);
  EXPECT_REL_NEAR(img32, ref.at("vae.decode.output"), test::form_tolerance(f));
  Tensor img16;
  {
    ops::PrecisionScope scope(ops::ComputePrecision::BF16);
    img16 = fast->vae().decode(z);
  }
  const double db = psnr(img16, img32);
  RecordProperty("vae_decode_psnr_db", std::to_string(db));
  EXPECT_GE(db, 35.0) << "bf16 VAE decode PSNR vs fp32";
  EXPECT_LT(db, 200.0) << "bf16 decode is bit-identical to fp32: the bf16 path did not run";

  // The UNet (CFG batch) and the text encoder: within a few percent of the output's range.
  const Tensor& input = ref.at("unet.input");
  const Tensor& context = ref.at("unet.context");
  const std::vector<float> t(size_t(input.size(0)), 500.f);
  Tensor u32 = exact->unet().forward(input, t, context);
  Tensor u16;
  {
    ops::PrecisionScope scope(ops::ComputePrecision::BF16);
    u16 = fast->unet().forward(input, t, context);
  }
  const double ue = rel_err(u16, u32);
  std::printf("%s: bf16 vs fp32: VAE decode %.1f dB, UNet max error %.2e of max |out|\n",
              test::form_test_name(f).c_str(), db, ue);
  EXPECT_LT(ue, 3e-2) << "bf16 UNet output vs fp32";
  EXPECT_GT(ue, 0.0);
  const Tensor& ids = ref.at("text.input_ids");
  const int64_t skip = exact->default_clip_skip();
  Tensor e32 = exact->text_encoder().encode(ids, skip);
  Tensor e16;
  {
    ops::PrecisionScope scope(ops::ComputePrecision::BF16);
    e16 = fast->text_encoder().encode(ids, skip);
  }
  EXPECT_LT(rel_err(e16, e32), 3e-2) << "bf16 text encoder vs fp32";
}

INSTANTIATE_TEST_SUITE_P(Forms, PrecisionGolden, testing::ValuesIn(float_forms()),
                         [](const auto& info) { return test::form_test_name(info.param); });

// PSNR in dB of two 8-bit images of the same size.
double psnr(const io::Image& a, const io::Image& b) {
  EXPECT_EQ(a.pixels.size(), b.pixels.size());
  double se = 0;
  for (size_t i = 0; i < a.pixels.size() && i < b.pixels.size(); ++i) {
    const double d = double(a.pixels[i]) - double(b.pixels[i]);
    se += d * d;
  }
  const double mse = se / double(std::max<size_t>(a.pixels.size(), 1));
  return mse == 0 ? INFINITY : 10 * std::log10(255.0 * 255.0 / mse);
}

std::vector<test::ModelForm> quantized_forms() {
  std::vector<test::ModelForm> out;
  for (auto& f : test::all_model_forms())
    if (f.quantized()) out.push_back(f);
  return out;
}

// q8_0 weights (a GGUF file as stable-diffusion.cpp converts it) against the model's float
// single file: a whole generation from the same seed (text encoder, CFG sampling, VAE decode)
// gives the same image within 30 dB PSNR, on the exact fp32 path and on bf16.
class QuantizedGolden : public testing::TestWithParam<test::ModelForm> {};

TEST_P(QuantizedGolden, Q8GenerationMatchesFloat) {
  const auto& q = GetParam();
  const auto forms = test::model_forms(q.model);
  auto twin = std::find_if(forms.begin(), forms.end(),
                           [](const test::ModelForm& f) { return f.kind == "safetensors"; });
  if (twin == forms.end()) GTEST_SKIP() << q.model << " has no float single file";
  auto exact = open_with(*twin, pipeline::Precision::Fp32);
  pipeline::GenerateRequest req;
  req.prompt = "a photograph of an astronaut riding a horse";
  req.steps = 4;
  req.sampler = "euler";
  req.seed = 11;
  req.width = req.height = exact->default_image_size();
  const io::Image want = pipeline::generate(*exact, req).images.at(0);
  std::vector<io::Image> got_by_precision;
  for (auto p : {pipeline::Precision::Fp32, pipeline::Precision::Bf16}) {
    auto quant = open_with(q, p);
    const io::Image& got =
        got_by_precision.emplace_back(pipeline::generate(*quant, req).images.at(0));
    const double db = psnr(got, want);
    std::printf("%s, %s: %lldx%lld image vs the float model's in fp32: %.1f dB\n",
                test::form_test_name(q).c_str(), pipeline::precision_name(p), (long long)req.width,
                (long long)req.height, db);
    EXPECT_GE(db, 30.0) << pipeline::precision_name(p);
    EXPECT_LT(db, 200.0) << "the q8_0 image is identical: the quantized weights were not used";
  }
  EXPECT_NE(got_by_precision[0].pixels, got_by_precision[1].pixels);
}

INSTANTIATE_TEST_SUITE_P(Forms, QuantizedGolden, testing::ValuesIn(quantized_forms()),
                         [](const auto& info) { return test::form_test_name(info.param); });

// generate() (text encoder, sampling, decoding) runs a bf16 model's products between
// activations in bf16 too: every attention call, none in f32.
TEST(Precision, GenerateRunsABf16ModelsAttentionInBf16) {
  const test::ModelForm* f = test::first_diffusers_form();
  if (!f) GTEST_SKIP() << "no diffusers reference model";
  auto fast = open_with(*f, pipeline::Precision::Bf16);
  pipeline::GenerateRequest req;
  req.prompt = "a red cube";
  req.steps = 2;
  req.width = req.height = 64;
  ops::profile_reset();
  ops::set_profiling(true);
  pipeline::generate(*fast, req);
  ops::set_profiling(false);
  int64_t bf16 = 0, f32 = 0;
  for (const auto& e : ops::profile_entries()) {
    if (e.label == "attention bf16") bf16 += e.calls;
    if (e.label == "attention") f32 += e.calls;
  }
  ops::profile_reset();
  EXPECT_GT(bf16, 0);
  EXPECT_EQ(f32, 0) << "attention ran in f32 in a bf16 model's generation";
}

TEST(Precision, ParseAndResolve) {
  EXPECT_EQ(pipeline::parse_precision("fp32"), pipeline::Precision::Fp32);
  EXPECT_EQ(pipeline::parse_precision("bf16"), pipeline::Precision::Bf16);
  EXPECT_EQ(pipeline::parse_precision("auto"), pipeline::Precision::Auto);
  EXPECT_THROW(pipeline::parse_precision("fp8"), Error);
  EXPECT_EQ(pipeline::resolve_precision(pipeline::Precision::Auto),
            ops::cpu_has_native_bf16() ? pipeline::Precision::Bf16 : pipeline::Precision::Fp32);
  EXPECT_EQ(pipeline::resolve_precision(pipeline::Precision::Fp32), pipeline::Precision::Fp32);
}

}  // namespace
