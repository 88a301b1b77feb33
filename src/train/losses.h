// The training losses of the VAE and of CLIP.
#pragma once
#include "models/clip/clip_vision_model.h"
#include "models/vae/autoencoder_kl.h"
#include "train/distributed.h"

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

// The contrastive logits [N, N] of a global batch of N split over the processes of `comm` (each
// holding its contiguous share, in rank order), from this process's output: every process's
// embeddings are gathered, so that every process gets the logits, and the loss, of one process
// holding the whole batch (a contrastive loss does not split into per-sample parts). Gradients
// flow into this process's own embeddings, scaled by the process count, so that averaging the
// gradients over the processes (as the optimizer does) sums their parts; the temperature's
// gradient is taken on rank 0 alone (times the process count; zero elsewhere). One process:
// out.logits_per_text.
Tensor global_clip_logits(const models::ClipModelOutput& out, const Tensor& logit_scale,
                          Communicator& comm);

}  // namespace diffuse::train
