// layer_norm, group_norm (+ fused SiLU) and softmax against double-precision references,
// including inputs with a large common offset (which a one-pass float variance gets wrong),
// strided inputs, several group counts, and shape errors.
// Tolerances (max error / max |ref|): norms 1e-5, softmax 1e-6.
#include <gtest/gtest.h>

#include <cmath>

#include "ops/ops.h"
#include "ops_test_util.h"

using namespace diffuse;
using diffuse::test::randn;
using diffuse::test::scrambled;
using diffuse::test::to_double;

namespace {

// Normalizes consecutive blocks of `block` values of xv; channel c of the block (of
// `per_channel` values each) gets weight/bias[c0 + c].
void normalize_blocks(const std::vector<double>& xv, int64_t block, int64_t per_channel,
                      int64_t channels_total, const std::vector<double>& w,
                      const std::vector<double>& b, double eps, bool silu,
                      std::vector<double>* out) {
  out->resize(xv.size());
  const int64_t nblocks = int64_t(xv.size()) / block;
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < block; ++i) mean += xv[size_t(blk * block + i)];
    mean /= double(block);
    for (int64_t i = 0; i < block; ++i) {
      const double d = xv[size_t(blk * block + i)] - mean;
      var += d * d;
    }
    var /= double(block);
    const double rstd = 1.0 / std::sqrt(var + eps);
    const int64_t blocks_per_row = channels_total * per_channel / block;
    for (int64_t i = 0; i < block; ++i) {
      const int64_t ch = (blk % blocks_per_row) * (block / per_channel) + i / per_channel;
      double y = (xv[size_t(blk * block + i)] - mean) * rstd;
      if (!w.empty()) y *= w[size_t(ch)];
      if (!b.empty()) y += b[size_t(ch)];
      if (silu) y = y / (1.0 + std::exp(-y));
      (*out)[size_t(blk * block + i)] = y;
    }
  }
}

std::vector<double> maybe(const Tensor& t) {
  return t.defined() ? to_double(t) : std::vector<double>();
}

}  // namespace

TEST(OpsLayerNorm, ShapesAffineAndOffsets) {
  struct Case {
    Shape shape;
    bool weight, bias;
    float offset;
  };
  uint32_t seed = 1;
  for (const Case& c : std::vector<Case>{{{3, 17}, true, true, 0.f},
                                         {{2, 77, 768}, true, true, 0.f},
                                         {{4, 33}, false, false, 0.f},
                                         {{5, 7}, true, false, 0.f},
                                         {{5, 7}, false, true, 0.f},
                                         {{1, 1}, true, true, 0.f},
                                         {{3, 64}, true, true, 1000.f}}) {
    const int64_t d = c.shape.back();
    Tensor x = ops::add_scalar(randn(c.shape, seed++, 2.f), c.offset);
    Tensor w = c.weight ? randn({d}, seed++) : Tensor();
    Tensor b = c.bias ? randn({d}, seed++) : Tensor();
    std::vector<double> ref;
    normalize_blocks(to_double(x), d, 1, d, maybe(w), maybe(b), 1e-5, false, &ref);
    SCOPED_TRACE(x.desc());
    EXPECT_MATCHES_REF(ops::layer_norm(x, w, b, 1e-5f), c.shape, ref, 1e-5);
  }
  // Strided input: [B, C, L] viewed as [B, L, C].
  Tensor x = randn({2, 24, 9}, 40).permute({0, 2, 1});
  Tensor w = randn({24}, 41), b = randn({24}, 42);
  std::vector<double> ref;
  normalize_blocks(to_double(x), 24, 1, 24, maybe(w), maybe(b), 1e-6, false, &ref);
  EXPECT_MATCHES_REF(ops::layer_norm(x, w, b, 1e-6f), (Shape{2, 9, 24}), ref, 1e-5);
}

TEST(OpsGroupNorm, GroupCountsAndShapes) {
  struct Case {
    Shape shape;
    int64_t groups;
    bool affine;
  };
  uint32_t seed = 1;
  for (const Case& c : std::vector<Case>{{{2, 32, 5, 7}, 32, true},
                                         {{2, 32, 5, 7}, 8, true},
                                         {{2, 32, 5, 7}, 4, false},
                                         {{1, 12, 17}, 1, true},
                                         {{1, 6, 3, 3}, 3, true},
                                         {{3, 64, 1, 1}, 32, true},
                                         {{1, 4, 2, 3, 3}, 2, true},
                                         {{1, 8, 16, 16}, 2, true}}) {
    const int64_t ch = c.shape[1];
    const int64_t spatial = shape_numel(c.shape) / (c.shape[0] * ch);
    Tensor x = ops::add_scalar(randn(c.shape, seed++, 3.f), 50.f);
    Tensor w = c.affine ? randn({ch}, seed++) : Tensor();
    Tensor b = c.affine ? randn({ch}, seed++) : Tensor();
    for (bool silu : {false, true}) {
      std::vector<double> ref;
      normalize_blocks(to_double(x), ch / c.groups * spatial, spatial, ch, maybe(w), maybe(b), 1e-6,
                       silu, &ref);
      SCOPED_TRACE(x.desc() + " groups " + std::to_string(c.groups) + (silu ? " silu" : ""));
      Tensor out = silu ? ops::group_norm_silu(x, c.groups, w, b, 1e-6f)
                        : ops::group_norm(x, c.groups, w, b, 1e-6f);
      EXPECT_MATCHES_REF(out, c.shape, ref, 1e-5);
    }
  }
}

TEST(OpsGroupNorm, StridedInput) {
  Tensor x = scrambled(randn({2, 8, 5, 3}, 7), {0, 2, 3, 1});  // stored as b h w c
  Tensor w = randn({8}, 8), b = randn({8}, 9);
  std::vector<double> ref;
  normalize_blocks(to_double(x), 2 * 15, 15, 8, maybe(w), maybe(b), 1e-5, false, &ref);
  EXPECT_MATCHES_REF(ops::group_norm(x, 4, w, b, 1e-5f), (Shape{2, 8, 5, 3}), ref, 1e-5);
}

TEST(OpsNorm, Errors) {
  Tensor x = randn({2, 6, 4, 4}, 1);
  EXPECT_THROW(ops::group_norm(x, 4, Tensor(), Tensor(), 1e-5f), Error);  // 6 % 4
  EXPECT_THROW(ops::group_norm(x, 0, Tensor(), Tensor(), 1e-5f), Error);
  EXPECT_THROW(ops::group_norm(x, 3, randn({5}, 2), Tensor(), 1e-5f), Error);
  EXPECT_THROW(ops::group_norm(randn({6}, 3), 3, Tensor(), Tensor(), 1e-5f), Error);
  EXPECT_THROW(ops::layer_norm(x, randn({6}, 2), Tensor(), 1e-5f), Error);
  EXPECT_THROW(ops::layer_norm(x, Tensor(), randn({4, 1}, 2), 1e-5f), Error);
}

TEST(OpsSoftmax, RowsStabilityAndStrides) {
  std::vector<Tensor> inputs = {randn({3, 17}, 1),
                                randn({2, 5, 77}, 2, 5.f),
                                randn({1, 1}, 3),
                                ops::add_scalar(randn({4, 33}, 4, 10.f), 1000.f),
                                randn({6, 9}, 5).transpose(0, 1),
                                randn({4097}, 6)};
  std::vector<float> with_inf = {-INFINITY, 1.f, 2.f, -INFINITY, 3.f, 0.5f};
  inputs.push_back(Tensor::from_vector(with_inf, {2, 3}));
  for (const Tensor& x : inputs) {
    const int64_t d = x.shape().back();
    const auto xv = to_double(x);
    std::vector<double> ref(xv.size());
    for (size_t r = 0; r < xv.size() / size_t(d); ++r) {
      double m = -INFINITY, s = 0;
      for (int64_t i = 0; i < d; ++i) m = std::max(m, xv[r * size_t(d) + size_t(i)]);
      for (int64_t i = 0; i < d; ++i) s += std::exp(xv[r * size_t(d) + size_t(i)] - m);
      for (int64_t i = 0; i < d; ++i)
        ref[r * size_t(d) + size_t(i)] = std::exp(xv[r * size_t(d) + size_t(i)] - m) / s;
    }
    SCOPED_TRACE(x.desc());
    Tensor out = ops::softmax(x);
    EXPECT_MATCHES_REF(out, x.shape(), ref, 1e-6);
    // Every row sums to 1.
    auto o = out.to_float_vector();
    for (size_t r = 0; r < o.size() / size_t(d); ++r) {
      double s = 0;
      for (int64_t i = 0; i < d; ++i) s += o[r * size_t(d) + size_t(i)];
      EXPECT_NEAR(s, 1.0, 1e-5);
    }
  }
}
