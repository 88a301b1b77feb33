#include "train/latent_scale.h"

#include <algorithm>
#include <cmath>

#include "autograd/autograd.h"
#include "core/error.h"

namespace diffuse::train {

float latent_scaling_factor(const models::AutoencoderKL& vae, const ImageCaptionDataset& data,
                            int64_t resolution, int64_t max_images) {
  DF_CHECK(max_images > 0, "latent scaling factor: the image count must be positive, got ",
           max_images);
  const int64_t n = std::min(max_images, data.size());
  DF_CHECK(n > 0, "latent scaling factor: no images");
  autograd::NoGradGuard no_grad;
  autograd::AutocastGuard f32(false);
  // Sums of (x - shift), shift the first image's average: no cancellation when the latents'
  // mean is large against their spread.
  double shift = 0, sum = 0, sum_sq = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    const Tensor img = data.image(i, resolution).unsqueeze(0);  // c h w -> 1 c h w
    const Tensor mean = vae.encode(img).mean.to(DType::F32).contiguous();
    const float* p = mean.data<float>();
    if (i == 0) {
      for (int64_t k = 0; k < mean.numel(); ++k) shift += p[k];
      shift /= double(mean.numel());
    }
    for (int64_t k = 0; k < mean.numel(); ++k) {
      const double d = double(p[k]) - shift;
      sum += d;
      sum_sq += d * d;
    }
    count += mean.numel();
  }
  DF_CHECK(count > 1, "latent scaling factor: a single latent element");
  const double var = (sum_sq - sum * sum / double(count)) / double(count - 1);
  DF_CHECK(std::isfinite(var) && var > 0, "latent scaling factor: the latents of ", n,
           " images have variance ", var, " (a VAE whose encoder gives constant latents)");
  return float(1.0 / std::sqrt(var));
}

}  // namespace diffuse::train
