// The training losses of the VAE and of CLIP.
#pragma once
#include "models/vae/autoencoder_kl.h"

namespace diffuse::train {

struct VaeLoss {
  Tensor loss;            // reconstruction + kl_weight * kl
  Tensor reconstruction;  // mse(decode(sample), image)
  Tensor kl;              // mean over the batch of the posterior's KL to N(0, I)
};
// One VAE training objective: encode `image` ([-1, 1]), sample the posterior with `noise`
// (shaped like the latents), decode, and compare (diffusers' AutoencoderKL training).
VaeLoss vae_loss(const models::AutoencoderKL& vae, const Tensor& image, const Tensor& noise,
                 float kl_weight);

// CLIP's symmetric contrastive loss over logits_per_text [N, N] (text i matches image i):
// (cross_entropy(logits, arange) + cross_entropy(logits^T, arange)) / 2.
Tensor clip_contrastive_loss(const Tensor& logits_per_text);

}  // namespace diffuse::train
