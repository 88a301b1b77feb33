#include "nn/attention.h"

#include <cmath>

#include "nn/functional.h"

namespace diffuse::nn {

namespace {
// b l (h d) -> b h l d  (a strided view; the attention kernel takes views)
Tensor split_heads(const Tensor& x, int64_t heads) {
  const int64_t b = x.size(0), l = x.size(1), hd = x.size(2);
  return F::permute(F::view(x, {b, l, heads, hd / heads}), {0, 2, 1, 3});
}
}  // namespace

Tensor multi_head_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                            bool causal) {
  DF_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3,
           "attention: q, k, v must be [B, L, D], got ", q.desc(), ", ", k.desc(), ", ", v.desc());
  DF_CHECK(heads > 0 && q.size(2) % heads == 0, "attention: width ", q.size(2),
           " does not split into ", heads, " heads");
  const int64_t b = q.size(0), lq = q.size(1), d = q.size(2);
  const float scale = 1.0f / std::sqrt(float(d / heads));
  Tensor o =
      F::attention(split_heads(F::contiguous(q), heads), split_heads(F::contiguous(k), heads),
                   split_heads(F::contiguous(v), heads), scale, causal);
  // b h l d -> b l (h d)
  return F::view(F::contiguous(F::permute(o, {0, 2, 1, 3})), {b, lq, d});
}

}  // namespace diffuse::nn
