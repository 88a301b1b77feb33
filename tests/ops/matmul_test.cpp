// linear and matmul (oneDNN) against double-precision references: odd sizes, broadcast batch
// dims, transposed/permuted operands, and shape errors.
// Tolerance (max error / max |ref|): 1e-5 for K up to ~1000 (f32 accumulation).
#include <gtest/gtest.h>

#include "ops/ops.h"
#include "ops_test_util.h"

using namespace diffuse;
using diffuse::test::randn;
using diffuse::test::to_double;

namespace {

// a [..., M, K] @ b [..., K, N] with numpy batch broadcasting, in double.
std::vector<double> matmul_ref(const Tensor& a, const Tensor& b, Shape* out_shape) {
  const auto av = to_double(a), bv = to_double(b);
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  const size_t nd = std::max(ba.size(), bb.size());
  while (ba.size() < nd) ba.insert(ba.begin(), 1);
  while (bb.size() < nd) bb.insert(bb.begin(), 1);
  Shape batch(nd);
  for (size_t d = 0; d < nd; ++d) batch[d] = std::max(ba[d], bb[d]);
  *out_shape = batch;
  out_shape->push_back(m);
  out_shape->push_back(n);
  const int64_t nb = shape_numel(batch);
  std::vector<double> out(size_t(nb * m * n));
  for (int64_t bi = 0; bi < nb; ++bi) {
    int64_t rem = bi, ia = 0, ib = 0, mula = 1, mulb = 1;
    for (size_t d = nd; d-- > 0;) {
      const int64_t idx = rem % batch[d];
      rem /= batch[d];
      ia += (ba[d] == 1 ? 0 : idx) * mula;
      ib += (bb[d] == 1 ? 0 : idx) * mulb;
      mula *= ba[d];
      mulb *= bb[d];
    }
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p)
          s += av[size_t((ia * m + i) * k + p)] * bv[size_t((ib * k + p) * n + j)];
        out[size_t((bi * m + i) * n + j)] = s;
      }
  }
  return out;
}

std::vector<double> linear_ref(const Tensor& x, const Tensor& w, const Tensor& b) {
  const auto xv = to_double(x), wv = to_double(w);
  const std::vector<double> bv = b.defined() ? to_double(b) : std::vector<double>();
  const int64_t in = w.size(1), out = w.size(0), rows = x.numel() / in;
  std::vector<double> r(size_t(rows * out));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double s = bv.empty() ? 0.0 : bv[size_t(o)];
      for (int64_t p = 0; p < in; ++p) s += xv[size_t(i * in + p)] * wv[size_t(o * in + p)];
      r[size_t(i * out + o)] = s;
    }
  return r;
}

void check_matmul(const Tensor& a, const Tensor& b, double tol = 1e-5) {
  SCOPED_TRACE(a.desc() + " x " + b.desc());
  Shape shape;
  const auto ref = matmul_ref(a, b, &shape);
  EXPECT_MATCHES_REF(ops::matmul(a, b), shape, ref, tol);
}

}  // namespace

TEST(OpsMatmul, Plain2D) {
  check_matmul(randn({3, 7}, 1), randn({7, 5}, 2));
  check_matmul(randn({1, 17}, 3), randn({17, 1}, 4));
  check_matmul(randn({77, 33}, 5), randn({33, 19}, 6));
  check_matmul(randn({16, 1000}, 7), randn({1000, 3}, 8));
}

TEST(OpsMatmul, BatchedAndBroadcast) {
  check_matmul(randn({2, 3, 5, 17}, 1), randn({2, 3, 17, 9}, 2));
  check_matmul(randn({2, 1, 5, 7}, 3), randn({3, 7, 4}, 4));  // -> [2, 3, 5, 4]
  check_matmul(randn({4, 5, 7}, 5), randn({7, 3}, 6));        // b without batch dims
  check_matmul(randn({5, 7}, 7), randn({2, 3, 7, 6}, 8));     // a without batch dims
  check_matmul(randn({3, 1, 2, 7}, 9), randn({1, 4, 7, 2}, 10));
}

TEST(OpsMatmul, StridedOperands) {
  // transposed views (unit stride in the other dim), a permuted 4-D view, and operands with
  // no unit stride in either of their two last dims.
  check_matmul(randn({7, 3}, 1).transpose(0, 1), randn({5, 7}, 2).transpose(0, 1));
  Tensor q = randn({2, 9, 3, 8}, 3).permute({0, 2, 1, 3});  // b l h d -> b h l d
  Tensor k = randn({2, 9, 3, 8}, 4).permute({0, 2, 3, 1});  // b l h d -> b h d l
  check_matmul(q, k);
  Tensor odd = randn({4, 5, 3}, 5).permute({2, 0, 1});   // [3, 4, 5], strides (1, 15, 3)
  Tensor odd2 = randn({5, 6, 3}, 6).permute({2, 0, 1});  // [3, 5, 6], strides (1, 18, 3)
  check_matmul(odd, odd2);
  // Interleaved batches: batch stride 4 inside each matrix's extent.
  Tensor no_unit = randn({5, 3, 4}, 7).permute({1, 0, 2}).slice(2, 0, 3);  // [3, 5, 3]
  check_matmul(no_unit.permute({0, 2, 1}), randn({3, 5, 2}, 8));
}

TEST(OpsLinear, ShapesBiasAndStrides) {
  struct Case {
    Shape x;
    int64_t out;
    bool bias;
  };
  uint32_t seed = 1;
  for (const Case& c : std::vector<Case>{{{7, 17}, 5, true},
                                         {{2, 77, 33}, 19, true},
                                         {{2, 3, 5, 16}, 1, false},
                                         {{33}, 7, true},
                                         {{1, 1}, 3, true}}) {
    Tensor x = randn(c.x, seed++);
    Tensor w = randn({c.out, c.x.back()}, seed++);
    Tensor b = c.bias ? randn({c.out}, seed++) : Tensor();
    Shape out_shape = c.x;
    out_shape.back() = c.out;
    SCOPED_TRACE(x.desc() + " with " + w.desc());
    EXPECT_MATCHES_REF(ops::linear(x, w, b), out_shape, linear_ref(x, w, b), 1e-5);
  }
  // x permuted (b c l -> b l c) and a transposed weight view.
  Tensor x = randn({2, 24, 13}, 50).permute({0, 2, 1});
  Tensor w = randn({24, 11}, 51).transpose(0, 1);  // [11, 24], strides (1, 11)
  Tensor b = randn({11}, 52);
  EXPECT_MATCHES_REF(ops::linear(x, w, b), (Shape{2, 13, 11}), linear_ref(x, w, b), 1e-5);
  // Repeated calls hit the primitive cache and give the same answer.
  Tensor y1 = ops::linear(x, w, b), y2 = ops::linear(x, w, b);
  EXPECT_EQ(y1.to_float_vector(), y2.to_float_vector());
}

TEST(OpsMatmul, Errors) {
  EXPECT_THROW(ops::matmul(randn({3, 4}, 1), randn({5, 2}, 2)), Error);
  EXPECT_THROW(ops::matmul(randn({2, 3, 4}, 1), randn({3, 4, 2}, 2)), Error);
  EXPECT_THROW(ops::matmul(randn({4}, 1), randn({4, 2}, 2)), Error);
  EXPECT_THROW(ops::linear(randn({3, 4}, 1), randn({5, 3}, 2)), Error);
  EXPECT_THROW(ops::linear(randn({3, 4}, 1), randn({5, 4}, 2), randn({4}, 3)), Error);
  EXPECT_THROW(ops::linear(randn({3, 4}, 1), randn({5, 4, 1}, 2)), Error);
}

TEST(OpsMatmul, EmptyDims) {
  EXPECT_EQ(ops::matmul(randn({0, 4}, 1), randn({4, 3}, 2)).shape(), (Shape{0, 3}));
  Tensor z = ops::linear(Tensor::empty({2, 0}), Tensor::empty({3, 0}), Tensor::full({3}, 1.5f));
  EXPECT_EQ(z.to_float_vector(), std::vector<float>(6, 1.5f));
}
