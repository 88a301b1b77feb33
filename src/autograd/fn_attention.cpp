// Backward rule of scaled dot-product attention. The probabilities are recomputed from the saved
// q, k (not stored by the forward), a chunk of (batch, head) pairs at a time so the Lq x Lk
// matrices stay within a fixed memory budget:
//   S = scale q k^T (causal: masked), P = softmax(S), out = P v
//   dv = P^T g, dP = g v^T, dS = P * (dP - rowsum(dP * P)), dq = scale dS k, dk = scale dS^T q
#include <algorithm>

#include "autograd/functions.h"
#include "autograd/kernels/kernels.h"
#include "ops/ops.h"

namespace diffuse::autograd {

namespace {
using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

constexpr int64_t kScoreBudgetBytes = int64_t(256) << 20;

Grads attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                         bool causal, const Tensor& g, const Needs& n) {
  const int64_t b = q.size(0), h = q.size(1), lq = q.size(2), d = q.size(3);
  const int64_t lk = k.size(2), dv = v.size(3), nh = b * h;
  // b h l d -> (b h) l d
  const Tensor qf = q.reshape({nh, lq, d}), kf = k.reshape({nh, lk, d});
  const Tensor vf = v.reshape({nh, lk, dv}), gf = g.reshape({nh, lq, dv});
  const int64_t per_head = std::max<int64_t>(1, lq * lk * int64_t(sizeof(float)) * 3);
  const int64_t chunk = std::clamp<int64_t>(kScoreBudgetBytes / per_head, 1, nh);
  std::vector<Tensor> dq, dk, dvs;
  for (int64_t n0 = 0; n0 < nh; n0 += chunk) {
    const int64_t n1 = std::min(nh, n0 + chunk);
    const Tensor qc = qf.slice(0, n0, n1), kc = kf.slice(0, n0, n1);
    const Tensor vc = vf.slice(0, n0, n1), gc = gf.slice(0, n0, n1);
    Tensor s = ops::matmul(qc, kc.transpose(1, 2));  // [c, Lq, Lk]
    kernels::scale_inplace(s, scale);
    if (causal) kernels::causal_mask_inplace(s);
    const Tensor p = ops::softmax(s);
    s = Tensor();
    if (n[2]) dvs.push_back(ops::matmul(p.transpose(1, 2), gc));  // [c, Lk, Dv]
    if (n[0] || n[1]) {
      Tensor ds = kernels::softmax_backward(p, ops::matmul(gc, vc.transpose(1, 2)));
      kernels::scale_inplace(ds, scale);
      if (n[0]) dq.push_back(ops::matmul(ds, kc));                  // [c, Lq, D]
      if (n[1]) dk.push_back(ops::matmul(ds.transpose(1, 2), qc));  // [c, Lk, D]
    }
  }
  auto join = [&](std::vector<Tensor>& parts, int64_t l, int64_t w) {
    if (parts.empty()) return Tensor();
    Tensor t = parts.size() == 1 ? parts[0] : ops::cat(parts, 0);
    return t.view({b, h, l, w});  // (b h) l d -> b h l d
  };
  return {join(dq, lq, d), join(dk, lk, d), join(dvs, lk, dv)};
}
}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal) {
  Tensor out = ops::attention(q, k, v, scale, causal);
  if (!needs_graph(q, k, v)) return out;
  return record("attention", out, {&q, &k, &v},
                [q = detach(q), k = detach(k), v = detach(v), scale, causal](
                    const Tensor& g, const Needs& n) -> Grads {
                  return attention_backward(q, k, v, scale, causal, g, n);
                });
}

}  // namespace diffuse::autograd
