// The VAE's latent scaling factor as Stable Diffusion measures it: 1 / the standard deviation
// of the training images' latents, so that the scaled latents a UNet learns on have unit
// variance. `diffuse train vae` writes it into each checkpoint's vae/config.json.
#pragma once
#include <cstdint>

#include "models/vae/autoencoder_kl.h"
#include "train/dataset.h"

namespace diffuse::train {

// 1 / std of the posterior means (not samples: the measure then does not depend on a seed, and
// the posterior variance of a trained VAE is tiny) of the first min(max_images, data.size())
// images of `data` in its order, each at `resolution`, encoded in f32 without gradients. The
// std is over every latent element, unbiased (n - 1, as torch's Tensor.std), accumulated in
// double. Throws when the latents are constant.
float latent_scaling_factor(const models::AutoencoderKL& vae, const ImageCaptionDataset& data,
                            int64_t resolution, int64_t max_images = 512);

}  // namespace diffuse::train
