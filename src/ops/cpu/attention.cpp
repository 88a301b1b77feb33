// Scaled dot-product attention, computed per (batch, head, block of queries) so that only a
// block x Lk score matrix is held per thread: S = scale * Q_blk K^T, row softmax (causal: key j
// of query i is masked when j > i), O_blk = P V. The two products go through dnnl_sgemm.
#include <algorithm>
#include <mutex>
#include <vector>

#include "core/parallel.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/reduce.h"

namespace diffuse::ops::cpu {

namespace {

// Leading dimension of the rows of a [.., L, D] operand (unit stride in D).
int64_t row_ld(const Tensor& t) {
  return t.shape()[2] > 1 ? t.strides()[2] : std::max<int64_t>(t.shape()[3], 1);
}

}  // namespace

Status attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                 Tensor& out) {
  const int64_t B = q.shape()[0], H = q.shape()[1], Lq = q.shape()[2], Dh = q.shape()[3];
  const int64_t Lk = k.shape()[2], Dv = v.shape()[3];
  if (B * H * Lq == 0) return {};
  // Query block: about 2 MiB of scores per thread (128 rows at Lk = 4096), 16 to 256 rows.
  const int64_t bq = std::min(Lq, std::clamp<int64_t>(524288 / Lk, 16, 256));
  const int64_t nblk = (Lq + bq - 1) / bq;
  const float* qp = q.data<float>();
  const float* kp = k.data<float>();
  const float* vp = v.data<float>();
  float* op = out.data<float>();
  const int64_t ldq = row_ld(q), ldk = row_ld(k), ldv = row_ld(v);
  std::mutex mu;
  Status status;
  parallel_for(B * H * nblk, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> s(size_t(bq * Lk));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t bh = t / nblk, blk = t % nblk;
      const int64_t b = bh / H, h = bh % H;
      const int64_t q0 = blk * bq, nq = std::min(bq, Lq - q0);
      const int64_t nk = causal ? std::min(Lk, q0 + nq) : Lk;
      const float* qb = qp + b * q.strides()[0] + h * q.strides()[1] + q0 * q.strides()[2];
      const float* kb = kp + b * k.strides()[0] + h * k.strides()[1];
      const float* vb = vp + b * v.strides()[0] + h * v.strides()[1];
      float* ob = op + (bh * Lq + q0) * Dv;
      Status st = sgemm(false, true, nq, nk, Dh, scale, qb, ldq, kb, ldk, 0.f, s.data(), nk);
      if (st.empty()) {
        for (int64_t r = 0; r < nq; ++r) {
          float* row = s.data() + r * nk;
          const int64_t valid = causal ? std::min(nk, q0 + r + 1) : nk;
          softmax_row(row, row, valid);
          std::fill(row + valid, row + nk, 0.f);
        }
        st = sgemm(false, false, nq, Dv, nk, 1.f, s.data(), nk, vb, ldv, 0.f, ob, Dv);
      }
      if (!st.empty()) {
        std::lock_guard<std::mutex> lock(mu);
        if (status.empty()) status = st;
        return;
      }
    }
  });
  return status;
}

}  // namespace diffuse::ops::cpu
