// bf16 against the exact fp32 path on a (full-size) checkpoint: decodes the same latents with
// both and prints the PSNR of the images; with --unet, also the UNet's largest error on a CFG
// batch. Seeded, so runs repeat.
//
//   precision_check MODEL [--size 512] [--config DIR] [--unet] [--seed N]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "ops/ops.h"
#include "pipeline/model_bundle.h"

using namespace diffuse;

namespace {

double psnr(const Tensor& a, const Tensor& b) {  // images in [-1, 1], compared in [0, 1]
  auto x = a.to_float_vector(), y = b.to_float_vector();
  double se = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double u = std::clamp((double(x[i]) + 1) / 2, 0.0, 1.0);
    const double v = std::clamp((double(y[i]) + 1) / 2, 0.0, 1.0);
    se += (u - v) * (u - v);
  }
  const double mse = se / double(x.size());
  return mse == 0 ? INFINITY : 10 * std::log10(1.0 / mse);
}

double rel_err(const Tensor& a, const Tensor& b) {  // max |a - b| / max |b|
  auto x = a.to_float_vector(), y = b.to_float_vector();
  double m = 1e-30, e = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    m = std::max(m, std::abs(double(y[i])));
    e = std::max(e, std::abs(double(x[i]) - double(y[i])));
  }
  return e / m;
}

Tensor randn(const Shape& s, uint32_t seed, float scale) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(size_t(shape_numel(s)));
  for (float& x : v) x = d(g);
  return Tensor::from_vector(v, s);
}

std::unique_ptr<pipeline::ModelBundle> open(const std::string& model, const std::string& config,
                                            pipeline::Precision p) {
  pipeline::BundleOptions opt;
  opt.config_dir = config;
  const char* data = std::getenv("DIFFUSE_DATA_DIR");
  opt.data_dir = data && *data ? data : DIFFUSE_DATA_DIR;
  opt.precision = p;
  return pipeline::ModelBundle::open(model, opt);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, config;
  int64_t size = 512;
  uint32_t seed = 1;
  bool unet = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--size" && i + 1 < argc) {
      size = std::atoll(argv[++i]);
    } else if (a == "--config" && i + 1 < argc) {
      config = argv[++i];
    } else if (a == "--seed" && i + 1 < argc) {
      seed = uint32_t(std::atol(argv[++i]));
    } else if (a == "--unet") {
      unet = true;
    } else if (model.empty() && a[0] != '-') {
      model = a;
    } else {
      std::fprintf(stderr, "usage: precision_check MODEL [--size 512] [--config DIR] [--unet]\n");
      return 2;
    }
  }
  if (model.empty()) {
    std::fprintf(stderr, "usage: precision_check MODEL [--size 512] [--config DIR] [--unet]\n");
    return 2;
  }
  try {
    auto exact = open(model, config, pipeline::Precision::Fp32);
    auto fast = open(model, config, pipeline::Precision::Bf16);
    const auto& vc = exact->vae_config;
    const int64_t f = int64_t(1) << (vc.block_out_channels.size() - 1), h = size / f;
    // Unscaled latents of the magnitude the sampler hands to the decoder.
    Tensor z = randn({1, vc.latent_channels, h, h}, seed, 1.f / vc.scaling_factor);
    Tensor img32 = exact->vae().decode(z);
    Tensor img16;
    {
      ops::PrecisionScope scope(ops::ComputePrecision::BF16);
      img16 = fast->vae().decode(z);
    }
    // A random checkpoint's images may span far less than [-1, 1]: the PSNR against the fp32
    // image's own range (peak = max - min) is the fair figure there.
    auto v32 = img32.to_float_vector(), v16 = img16.to_float_vector();
    const auto [lo, hi] = std::minmax_element(v32.begin(), v32.end());
    double se = 0;
    for (size_t i = 0; i < v32.size(); ++i) se += double(v16[i] - v32[i]) * double(v16[i] - v32[i]);
    const double range = double(*hi - *lo), mse = se / double(v32.size());
    std::printf(
        "%s %lldx%lld: VAE decode bf16 vs fp32: PSNR %.2f dB in [-1, 1] (fp32 image spans "
        "[%.3g, %.3g]); PSNR %.2f dB against that range\n",
        model.c_str(), (long long)size, (long long)size, psnr(img16, img32), *lo, *hi,
        mse == 0 ? INFINITY : 10 * std::log10(range * range / mse));
    if (unet) {
      const auto& uc = exact->unet_config;
      Tensor x = randn({2, uc.in_channels, h, h}, seed + 1, 1.f);
      Tensor ctx = randn({2, 77, uc.cross_attention_dim}, seed + 2, 1.f);
      Tensor u32 = exact->unet().forward(x, {500.f, 500.f}, ctx);
      Tensor u16;
      {
        ops::PrecisionScope scope(ops::ComputePrecision::BF16);
        u16 = fast->unet().forward(x, {500.f, 500.f}, ctx);
      }
      std::printf("UNet bf16 vs fp32: max error %.3e of max |output|\n", rel_err(u16, u32));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "precision_check: %s\n", e.what());
    return 1;
  }
  return 0;
}
