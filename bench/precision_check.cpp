// bf16 against the exact fp32 path on a (full-size) checkpoint: decodes the same latents with
// both and prints the PSNR of the images; with --unet, also the UNet's largest error on a CFG
// batch. With --quantized Q (a GGUF conversion of MODEL, e.g. q8_0), generates one image from
// the same seed with MODEL in fp32 and with Q in fp32 and bf16 (CFG 7.5, euler, --steps) and
// prints the PSNR of Q's decoded images against MODEL's. Seeded, so runs repeat.
//
//   precision_check MODEL [--size 512] [--config DIR] [--unet] [--seed N]
//                   [--quantized Q.gguf [--steps 4]]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "ops/ops.h"
#include "pipeline/generate.h"
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

// PSNR of `got` against `want` (images in [-1, 1]) over [-1, 1] and over `want`'s own range: a
// random checkpoint's images may span far less than [-1, 1], and there the second is the fair
// figure.
std::string compare_images(const Tensor& got, const Tensor& want) {
  auto a = got.to_float_vector(), b = want.to_float_vector();
  const auto [lo, hi] = std::minmax_element(b.begin(), b.end());
  double se = 0;
  for (size_t i = 0; i < b.size(); ++i) se += double(a[i] - b[i]) * double(a[i] - b[i]);
  const double range = double(*hi - *lo), mse = se / double(b.size());
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "PSNR %.2f dB in [-1, 1] (reference image spans [%.3g, %.3g]); PSNR %.2f dB "
                "against that range",
                psnr(got, want), *lo, *hi,
                mse == 0 ? INFINITY : 10 * std::log10(range * range / mse));
  return buf;
}

// One image of `size` from `seed`: the final latents, decoded by the model's own VAE.
Tensor generate_decoded(pipeline::ModelBundle& m, int64_t size, int steps, uint32_t seed) {
  pipeline::GenerateRequest req;
  req.prompt = "a photograph of an astronaut riding a horse";
  req.width = req.height = size;
  req.steps = steps;
  req.sampler = "euler";
  req.seed = seed;
  auto res = pipeline::generate(m, req);
  const auto scope = m.compute_scope();
  return m.vae().decode(ops::scale(res.latents, 1.0f / m.vae_config.scaling_factor));
}

int check_quantized(const std::string& model, const std::string& quantized,
                    const std::string& config, int64_t size, int steps, uint32_t seed) {
  Tensor want;
  {
    auto exact = open(model, config, pipeline::Precision::Fp32);
    want = generate_decoded(*exact, size, steps, seed);
  }
  for (auto p : {pipeline::Precision::Fp32, pipeline::Precision::Bf16}) {
    auto q = open(quantized, config, p);
    Tensor got = generate_decoded(*q, size, steps, seed);
    std::printf("%s %s vs %s fp32, %lldx%lld, %d steps: %s\n", quantized.c_str(),
                pipeline::precision_name(p), model.c_str(), (long long)size, (long long)size, steps,
                compare_images(got, want).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, config;
  int64_t size = 512;
  uint32_t seed = 1;
  bool unet = false;
  std::string quantized;
  int steps = 4;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--size" && i + 1 < argc) {
      size = std::atoll(argv[++i]);
    } else if (a == "--config" && i + 1 < argc) {
      config = argv[++i];
    } else if (a == "--seed" && i + 1 < argc) {
      seed = uint32_t(std::atol(argv[++i]));
    } else if (a == "--quantized" && i + 1 < argc) {
      quantized = argv[++i];
    } else if (a == "--steps" && i + 1 < argc) {
      steps = std::atoi(argv[++i]);
    } else if (a == "--unet") {
      unet = true;
    } else if (model.empty() && a[0] != '-') {
      model = a;
    } else {
      model.clear();
      break;
    }
  }
  if (model.empty() || steps < 1) {
    std::fprintf(stderr,
                 "usage: precision_check MODEL [--size 512] [--config DIR] [--unet] [--seed N]\n"
                 "                       [--quantized Q.gguf [--steps 4]]\n");
    return 2;
  }
  try {
    if (!quantized.empty()) return check_quantized(model, quantized, config, size, steps, seed);
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
    std::printf("%s %lldx%lld: VAE decode bf16 vs fp32: %s\n", model.c_str(), (long long)size,
                (long long)size, compare_images(img16, img32).c_str());
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
