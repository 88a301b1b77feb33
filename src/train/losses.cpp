#include "train/losses.h"

#include <algorithm>
#include <vector>

#include "autograd/autograd.h"
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

namespace {

// x with its gradient multiplied by k: detach(x) + k * (x - detach(x)), the same values.
Tensor scale_gradient(const Tensor& x, float k) {
  const Tensor d = autograd::detach(x);
  return F::add(d, F::scale(F::sub(x, d), k));
}

// Every process's rows of `local` [b, D], in rank order [P * b, D]; this process's own carry
// their gradient times P.
Tensor gather_rows(const Tensor& local, Communicator& comm) {
  const int64_t p = comm.size(), r = comm.rank(), b = local.size(0), d = local.size(1);
  std::vector<float> all(size_t(p * b * d), 0.0f);
  const std::vector<float> mine = autograd::detach(local).to_float_vector();
  std::copy(mine.begin(), mine.end(), all.begin() + r * b * d);
  comm.all_reduce_sum(all.data(), int64_t(all.size()));  // x + 0 is x: every row exact
  const Tensor gathered = Tensor::from_vector(all, {p * b, d});
  std::vector<Tensor> parts;
  if (r > 0) parts.push_back(gathered.slice(0, 0, r * b));
  parts.push_back(scale_gradient(local, float(p)));
  if (r + 1 < p) parts.push_back(gathered.slice(0, (r + 1) * b, p * b));
  return F::cat(parts, 0);
}

}  // namespace

Tensor global_clip_logits(const models::ClipModelOutput& out, const Tensor& logit_scale,
                          Communicator& comm) {
  if (comm.size() <= 1) return out.logits_per_text;
  const Tensor text = gather_rows(out.text_embeds, comm);
  const Tensor image = gather_rows(out.image_embeds, comm);
  // (a zero gradient elsewhere: every process has a gradient for every parameter)
  const Tensor scale = scale_gradient(logit_scale, comm.rank() == 0 ? float(comm.size()) : 0.0f);
  return F::mul(F::matmul(text, F::transpose(image, 0, 1)), F::exp(scale));
}

}  // namespace diffuse::train
