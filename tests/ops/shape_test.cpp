// embedding, upsample_nearest2x and cat against index-math references (exact), and their errors.
#include <gtest/gtest.h>

#include "ops/ops.h"
#include "ops_test_util.h"

using namespace diffuse;
using diffuse::test::randn;
using diffuse::test::to_double;

TEST(OpsEmbedding, I64AndI32Ids) {
  Tensor w = randn({17, 5}, 1);
  const auto wv = w.to_float_vector();
  std::vector<int64_t> ids = {3, 0, 16, 3, 7, 1};
  Tensor ids64 = Tensor::from_i64(ids, {2, 3});
  Tensor ids32 = ids64.to(DType::I32);
  for (const Tensor& t : {ids64, ids32, ids64.transpose(0, 1)}) {
    Tensor out = ops::embedding(w, t);
    Shape expect = t.shape();
    expect.push_back(5);
    ASSERT_EQ(out.shape(), expect);
    const auto iv = t.to_float_vector();  // logical order
    const auto ov = out.to_float_vector();
    for (size_t i = 0; i < iv.size(); ++i)
      for (size_t d = 0; d < 5; ++d) EXPECT_EQ(ov[i * 5 + d], wv[size_t(iv[i]) * 5 + d]);
  }
  // A transposed (strided) table: rows of w2 = columns of w.
  Tensor w2 = w.transpose(0, 1);  // [5, 17]
  Tensor out = ops::embedding(w2, Tensor::from_i64({4, 0}, {2}));
  const auto ov = out.to_float_vector();
  for (size_t d = 0; d < 17; ++d) {
    EXPECT_EQ(ov[d], wv[d * 5 + 4]);
    EXPECT_EQ(ov[17 + d], wv[d * 5 + 0]);
  }
}

TEST(OpsEmbedding, Errors) {
  Tensor w = randn({10, 4}, 1);
  EXPECT_THROW(ops::embedding(w, Tensor::from_i64({1, 10}, {2})), Error);
  EXPECT_THROW(ops::embedding(w, Tensor::from_i64({-1}, {1})), Error);
  EXPECT_THROW(ops::embedding(w, Tensor::from_i64({1, 2}, {2}).to(DType::F32)), Error);
  EXPECT_THROW(ops::embedding(randn({10}, 2), Tensor::from_i64({1}, {1})), Error);
}

TEST(OpsUpsample, Nearest2x) {
  for (const Tensor& x : {randn({2, 3, 5, 7}, 1), randn({1, 1, 1, 1}, 2),
                          randn({2, 5, 7, 3}, 3).permute({0, 3, 1, 2})}) {
    const Shape& s = x.shape();
    Tensor out = ops::upsample_nearest2x(x);
    ASSERT_EQ(out.shape(), (Shape{s[0], s[1], 2 * s[2], 2 * s[3]}));
    const auto xv = x.to_float_vector(), ov = out.to_float_vector();
    for (int64_t p = 0; p < s[0] * s[1]; ++p)
      for (int64_t i = 0; i < 2 * s[2]; ++i)
        for (int64_t j = 0; j < 2 * s[3]; ++j)
          ASSERT_EQ(ov[size_t((p * 2 * s[2] + i) * 2 * s[3] + j)],
                    xv[size_t((p * s[2] + i / 2) * s[3] + j / 2)]);
  }
  EXPECT_THROW(ops::upsample_nearest2x(randn({3, 4, 5}, 1)), Error);
}

TEST(OpsCat, AlongEachDim) {
  Tensor a = randn({2, 3, 4}, 1), b = randn({2, 5, 4}, 2);
  Tensor bt = randn({2, 4, 5}, 3).transpose(1, 2);  // [2, 5, 4], strided
  for (const Tensor& second : {b, bt}) {
    Tensor out = ops::cat({a, second}, 1);
    ASSERT_EQ(out.shape(), (Shape{2, 8, 4}));
    const auto av = a.to_float_vector(), bv = second.to_float_vector(), ov = out.to_float_vector();
    for (size_t n = 0; n < 2; ++n)
      for (size_t r = 0; r < 8; ++r)
        for (size_t c = 0; c < 4; ++c)
          EXPECT_EQ(ov[(n * 8 + r) * 4 + c],
                    r < 3 ? av[(n * 3 + r) * 4 + c] : bv[(n * 5 + r - 3) * 4 + c]);
  }
  // dim 0, last dim (negative), three inputs, an empty part, and i64 data.
  Tensor x = randn({1, 3}, 4), y = randn({2, 3}, 5), z = Tensor::empty({0, 3});
  Tensor c0 = ops::cat({x, z, y}, 0);
  std::vector<float> expect = x.to_float_vector();
  for (float v : y.to_float_vector()) expect.push_back(v);
  EXPECT_EQ(c0.shape(), (Shape{3, 3}));
  EXPECT_EQ(c0.to_float_vector(), expect);
  Tensor c1 = ops::cat({x, x, x}, -1);
  EXPECT_EQ(c1.shape(), (Shape{1, 9}));
  Tensor ci = ops::cat({Tensor::from_i64({1, 2}, {2}), Tensor::from_i64({3}, {1})}, 0);
  EXPECT_EQ(ci.dtype(), DType::I64);
  EXPECT_EQ(ci.to_float_vector(), (std::vector<float>{1, 2, 3}));
}

TEST(OpsCat, Errors) {
  EXPECT_THROW(ops::cat({}, 0), Error);
  EXPECT_THROW(ops::cat({randn({2, 3}, 1), randn({3, 3}, 2)}, 1), Error);
  EXPECT_THROW(ops::cat({randn({2, 3}, 1), randn({2, 3, 1}, 2)}, 0), Error);
  EXPECT_THROW(ops::cat({randn({2, 3}, 1), Tensor::from_i64({1, 2, 3}, {1, 3})}, 0), Error);
  EXPECT_THROW(ops::cat({randn({2, 3}, 1)}, 2), Error);
}
