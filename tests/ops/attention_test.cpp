// attention against a double-precision reference: causal and not, Lq != Lk both ways, several
// query blocks (long key sequences shrink the block), strided q/k/v views, shape errors.
// Tolerance (max error / max |ref|): 1e-5.
#include <gtest/gtest.h>

#include <cmath>

#include "ops/ops.h"
#include "ops_test_util.h"

using namespace diffuse;
using diffuse::test::randn;
using diffuse::test::to_double;

namespace {

std::vector<double> attention_ref(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                                  bool causal) {
  const auto qv = to_double(q), kv = to_double(k), vv = to_double(v);
  const int64_t B = q.size(0), H = q.size(1), Lq = q.size(2), D = q.size(3);
  const int64_t Lk = k.size(2), Dv = v.size(3);
  std::vector<double> out(size_t(B * H * Lq * Dv));
  std::vector<double> p(static_cast<size_t>(Lk));
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t i = 0; i < Lq; ++i) {
      double m = -INFINITY;
      for (int64_t j = 0; j < Lk; ++j) {
        if (causal && j > i) {
          p[size_t(j)] = -INFINITY;
          continue;
        }
        double s = 0;
        for (int64_t d = 0; d < D; ++d)
          s += qv[size_t((bh * Lq + i) * D + d)] * kv[size_t((bh * Lk + j) * D + d)];
        p[size_t(j)] = s * scale;
        m = std::max(m, p[size_t(j)]);
      }
      double sum = 0;
      for (int64_t j = 0; j < Lk; ++j) sum += (p[size_t(j)] = std::exp(p[size_t(j)] - m));
      for (int64_t d = 0; d < Dv; ++d) {
        double acc = 0;
        for (int64_t j = 0; j < Lk; ++j) acc += p[size_t(j)] * vv[size_t((bh * Lk + j) * Dv + d)];
        out[size_t((bh * Lq + i) * Dv + d)] = acc / sum;
      }
    }
  return out;
}

void check_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
  const float scale = 1.f / std::sqrt(float(q.size(3)));
  SCOPED_TRACE(q.desc() + " " + k.desc() + " " + v.desc() + (causal ? " causal" : ""));
  const Shape shape{q.size(0), q.size(1), q.size(2), v.size(3)};
  EXPECT_MATCHES_REF(ops::attention(q, k, v, scale, causal), shape,
                     attention_ref(q, k, v, scale, causal), 1e-5);
}

}  // namespace

TEST(OpsAttention, CausalAndNot) {
  struct Case {
    int64_t b, h, lq, lk, d;
  };
  uint32_t seed = 1;
  for (const Case& c : std::vector<Case>{{1, 1, 1, 1, 1},
                                         {2, 3, 7, 17, 8},
                                         {1, 2, 17, 7, 16},
                                         {1, 2, 77, 77, 64},
                                         {2, 1, 5, 9, 3},
                                         {1, 1, 300, 257, 40},
                                         {1, 1, 200, 8200, 4}}) {  // long keys: 4 query blocks
    Tensor q = randn({c.b, c.h, c.lq, c.d}, seed++);
    Tensor k = randn({c.b, c.h, c.lk, c.d}, seed++);
    Tensor v = randn({c.b, c.h, c.lk, c.d}, seed++);
    for (bool causal : {false, true}) check_attention(q, k, v, causal);
  }
}

TEST(OpsAttention, StridedViewsAndValueWidth) {
  // The layout attention sees in practice: [B, L, H, Dh] projections viewed as [B, H, L, Dh].
  Tensor q = randn({2, 11, 3, 8}, 1).permute({0, 2, 1, 3});  // b l h d -> b h l d
  Tensor k = randn({2, 13, 3, 8}, 2).permute({0, 2, 1, 3});
  Tensor v = randn({2, 13, 3, 5}, 3).permute({0, 2, 1, 3});  // Dv != Dh
  check_attention(q, k, v, false);
  check_attention(q, k, v, true);
  // k without a unit stride in Dh (copied before the kernel).
  Tensor kt = randn({2, 3, 8, 13}, 4).transpose(2, 3);
  check_attention(q, kt, v, false);
  // Large scores: the softmax must stay finite.
  Tensor qb = ops::scale(randn({1, 1, 9, 4}, 5), 30.f);
  Tensor kb = ops::scale(randn({1, 1, 12, 4}, 6), 30.f);
  check_attention(qb, kb, randn({1, 1, 12, 4}, 7), true);
}

TEST(OpsAttention, Errors) {
  Tensor q = randn({1, 2, 5, 8}, 1);
  EXPECT_THROW(ops::attention(q, randn({1, 2, 6, 4}, 2), randn({1, 2, 6, 8}, 3), 1.f, false),
               Error);  // Dh
  EXPECT_THROW(ops::attention(q, randn({1, 2, 6, 8}, 2), randn({1, 2, 7, 8}, 3), 1.f, false),
               Error);  // Lk of v
  EXPECT_THROW(ops::attention(q, randn({1, 3, 6, 8}, 2), randn({1, 3, 6, 8}, 3), 1.f, false),
               Error);  // heads
  EXPECT_THROW(
      ops::attention(randn({2, 5, 8}, 1), randn({2, 6, 8}, 2), randn({2, 6, 8}, 3), 1.f, false),
      Error);  // 3-D
  EXPECT_THROW(
      ops::attention(q, Tensor::empty({1, 2, 0, 8}), Tensor::empty({1, 2, 0, 8}), 1.f, false),
      Error);  // no keys
}
