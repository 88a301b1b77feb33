#include "train/losses.h"

#include "autograd/functions.h"

namespace diffuse::train {

namespace F = autograd;

VaeLoss vae_loss(const models::AutoencoderKL& vae, const Tensor& image, const Tensor& noise,
                 float kl_weight) {
  const models::LatentDistribution d = vae.encode(image);
  VaeLoss r;
  r.reconstruction = F::mse_loss(vae.decode(d.sample(noise)), image);
  r.kl = F::mean(d.kl());
  r.loss = F::add(r.reconstruction, F::scale(r.kl, kl_weight));
  return r;
}

Tensor clip_contrastive_loss(const Tensor& logits_per_text) {
  DF_CHECK(logits_per_text.dim() == 2 && logits_per_text.size(0) == logits_per_text.size(1),
           "clip loss: logits must be square [N, N], got ", logits_per_text.desc());
  const int64_t n = logits_per_text.size(0);
  std::vector<int64_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = i;
  const Tensor labels = Tensor::from_i64(ids, {n});
  const Tensor text = F::cross_entropy(logits_per_text, labels);
  const Tensor image = F::cross_entropy(F::transpose(logits_per_text, 0, 1), labels);
  return F::scale(F::add(text, image), 0.5f);
}

}  // namespace diffuse::train
