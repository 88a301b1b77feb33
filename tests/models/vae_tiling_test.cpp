// Tiled VAE decoding (diffusers' enable_vae_tiling): the tiling and blending against a decoder
// that acts pixel by pixel (where tiles must give the whole image back), and the real decoder
// of a reference model: small latents decode whole, larger ones close to the whole decode.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "model_forms.h"
#include "models/vae/autoencoder_kl.h"
#include "pipeline/generate.h"
#include "pipeline/model_bundle.h"
#include "test_util.h"

using namespace diffuse;

namespace {

Tensor random_latents(int64_t h, int64_t w, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(size_t(4 * h * w));
  for (float& x : v) x = d(g);
  return Tensor::from_vector(v, {1, 4, h, w});
}

// Nearest upsampling by 8 of the first 3 channels: every output pixel depends on its latent
// alone, so a tile decodes exactly as the whole does.
Tensor pointwise_decoder(const Tensor& z) {
  const int64_t h = z.size(2), w = z.size(3);
  Tensor out = Tensor::empty({1, 3, h * 8, w * 8});
  const float* pz = z.data<float>();
  float* po = out.data<float>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < h * 8; ++y)
      for (int64_t x = 0; x < w * 8; ++x)
        po[(c * h * 8 + y) * w * 8 + x] = pz[(c * h + y / 8) * w + x / 8];
  return out;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to_float_vector(), y = b.to_float_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(double(x[i]) - y[i]));
  return m;
}

}  // namespace

TEST(VaeTiling, TilesOfAPointwiseDecoderGiveTheWholeImage) {
  for (auto [h, w] : {std::pair<int64_t, int64_t>{40, 40}, {37, 70}, {16, 50}, {17, 17}}) {
    const Tensor z = random_latents(h, w, uint32_t(h * 100 + w));
    int tiles = 0;
    const Tensor tiled = models::tiled_decode(z, 16, 128, [&](const Tensor& t) {
      ++tiles;
      EXPECT_LE(t.size(2), 16);
      EXPECT_LE(t.size(3), 16);
      return pointwise_decoder(t);
    });
    const Tensor whole = pointwise_decoder(z);
    ASSERT_EQ(tiled.shape(), whole.shape()) << h << "x" << w;
    EXPECT_LT(max_abs_diff(tiled, whole), 1e-6) << h << "x" << w;
    // tiles start every 12 latents (3/4 of 16)
    EXPECT_EQ(tiles, int(((h + 11) / 12) * ((w + 11) / 12))) << h << "x" << w;
  }
}

// Tiles are blended: where neighbouring tiles disagree, the seam is a linear ramp over a
// quarter of a tile (32 pixels here), from the tile above to the tile below.
TEST(VaeTiling, SeamsAreLinearRamps) {
  // Latents whose value is their row; each tile decodes to the constant of its top row (0 for
  // the first row of tiles, 12 for the second: tiles start every 12 latents).
  std::vector<float> v(size_t(4 * 24 * 16));
  for (int64_t c = 0; c < 4; ++c)
    for (int64_t y = 0; y < 24; ++y)
      for (int64_t x = 0; x < 16; ++x) v[size_t((c * 24 + y) * 16 + x)] = float(y);
  const Tensor z = Tensor::from_vector(v, {1, 4, 24, 16});
  const Tensor out = models::tiled_decode(z, 16, 128, [](const Tensor& t) {
    return Tensor::full({1, 3, t.size(2) * 8, t.size(3) * 8}, t.data<float>()[0]);
  });
  ASSERT_EQ(out.shape(), (Shape{1, 3, 192, 128}));
  const float* p = out.data<float>();
  // rows 0..95 come from the first row of tiles (0); rows 96..127 ramp into the second (12)
  EXPECT_EQ(p[0], 0.f);
  EXPECT_EQ(p[95 * 128 + 100], 0.f);
  for (int k = 0; k < 32; ++k) EXPECT_NEAR(p[(96 + k) * 128 + 5], 12.0 * k / 32, 1e-5) << k;
  EXPECT_EQ(p[191 * 128 + 127], 12.f);
}

TEST(VaeTiling, ReferenceDecoder) {
  const test::ModelForm* f = test::first_diffusers_form();
  if (!f) GTEST_SKIP() << "no diffusers reference model";
  auto bundle = test::open_form(*f);
  const auto& vae = bundle->vae();
  const int64_t tile = vae.config().sample_size / vae.scale_factor();
  // At most one tile: the whole decode, bit for bit.
  const Tensor small = random_latents(tile, tile - 3, 7);
  EXPECT_EQ(vae.decode_tiled(small).to_float_vector(), vae.decode(small).to_float_vector());
  // Larger: tiled, the same size, and close to the whole decode (the decoder's attention and
  // convolutions see past a tile's edge, so not equal).
  const Tensor big = random_latents(tile * 2 + 5, tile + 9, 8);
  const Tensor whole = vae.decode(big), tiled = vae.decode_tiled(big);
  ASSERT_EQ(tiled.shape(), whole.shape());
  const auto x = whole.to_float_vector(), y = tiled.to_float_vector();
  double se = 0, lo = 1e30, hi = -1e30;
  for (size_t i = 0; i < x.size(); ++i) {
    se += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    lo = std::min(lo, double(x[i]));
    hi = std::max(hi, double(x[i]));
  }
  const double psnr = 10 * std::log10((hi - lo) * (hi - lo) / (se / double(x.size())));
  std::printf("tiled vs whole decode of %lldx%lld latents: %.1f dB (against the image's range)\n",
              (long long)big.size(2), (long long)big.size(3), psnr);
  EXPECT_GT(psnr, 20.0);
  EXPECT_LT(psnr, 200.0);  // really tiled
}

// generate --vae-tiling: the same image as without it when the image fits one tile.
TEST(VaeTiling, GenerateWithTilingAtOneTileIsTheSame) {
  const test::ModelForm* f = test::first_diffusers_form();
  if (!f) GTEST_SKIP() << "no diffusers reference model";
  auto bundle = test::open_form(*f);
  pipeline::GenerateRequest req;
  req.prompt = "a cube";
  req.steps = 2;
  req.width = req.height = 64;
  const auto plain = pipeline::generate(*bundle, req).images.at(0).pixels;
  req.vae_tiling = true;
  EXPECT_EQ(pipeline::generate(*bundle, req).images.at(0).pixels, plain);
}
