#include <gtest/gtest.h>

#include <numeric>

#include "core/allocator.h"
#include "core/parallel.h"
#include "core/tensor.h"

using namespace diffuse;

static Tensor iota(const Shape& s) {
  std::vector<float> v(size_t(shape_numel(s)));
  std::iota(v.begin(), v.end(), 0.f);
  return Tensor::from_vector(v, s);
}

TEST(Tensor, ContiguousStridesAndViews) {
  Tensor t = iota({2, 3, 4});
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_TRUE(t.is_contiguous());
  Tensor v = t.view({6, -1});
  EXPECT_EQ(v.shape(), (Shape{6, 4}));
  EXPECT_THROW(t.view({5, -1}), Error);
  EXPECT_THROW(t.view({-1, -1}), Error);
}

TEST(Tensor, PermuteMatchesIndexMath) {
  Tensor t = iota({2, 3, 4});
  Tensor p = t.permute({2, 0, 1});  // c h w -> w c h
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_FALSE(p.is_contiguous());
  auto v = p.contiguous().to_float_vector();
  for (int w = 0; w < 4; ++w)
    for (int c = 0; c < 2; ++c)
      for (int h = 0; h < 3; ++h) EXPECT_EQ(v[size_t((w * 2 + c) * 3 + h)], float(c * 12 + h * 4 + w));
}

TEST(Tensor, SliceSelectTransposeUnsqueeze) {
  Tensor t = iota({3, 5});
  Tensor s = t.slice(1, 1, 4);
  EXPECT_EQ(s.shape(), (Shape{3, 3}));
  EXPECT_EQ(s.contiguous().to_float_vector()[3], 6.f);
  Tensor r = t.select(0, 2);
  EXPECT_EQ(r.shape(), (Shape{5}));
  EXPECT_EQ(r.to_float_vector()[0], 10.f);
  Tensor tr = t.transpose(0, 1).contiguous();
  EXPECT_EQ(tr.shape(), (Shape{5, 3}));
  EXPECT_EQ(tr.to_float_vector()[1], 5.f);
  EXPECT_EQ(t.unsqueeze(0).shape(), (Shape{1, 3, 5}));
  EXPECT_EQ(t.unsqueeze(-1).shape(), (Shape{3, 5, 1}));
  EXPECT_THROW(t.slice(1, 2, 9), Error);
  EXPECT_THROW(t.select(0, 3), Error);
  EXPECT_THROW(t.size(2), Error);
}

TEST(Tensor, DtypeConversionRoundTrips) {
  Tensor t = Tensor::from_vector({1.f, -2.5f, 0.1f, 65504.f, 1e-7f}, {5});
  auto h = t.to(DType::F16).to(DType::F32).to_float_vector();
  EXPECT_EQ(h[0], 1.f);
  EXPECT_EQ(h[1], -2.5f);
  EXPECT_NEAR(h[2], 0.1f, 1e-4);
  EXPECT_EQ(h[3], 65504.f);
  EXPECT_NEAR(h[4], 1e-7f, 3e-8);  // subnormal step 2^-24
  auto b = t.to(DType::BF16).to(DType::F32).to_float_vector();
  EXPECT_EQ(b[1], -2.5f);
  EXPECT_NEAR(b[2], 0.1f, 1e-3);
  Tensor ids = Tensor::from_i64({3, 4}, {2});
  EXPECT_EQ(ids.to(DType::F32).to_float_vector()[1], 4.f);
  EXPECT_THROW(ids.data<float>(), Error);
}

TEST(Tensor, StridedCopyOfNonContiguousConvertsDtype) {
  Tensor t = iota({4, 6}).transpose(0, 1);
  Tensor h = t.to(DType::F16);
  EXPECT_EQ(h.shape(), (Shape{6, 4}));
  EXPECT_EQ(h.to_float_vector()[1], 6.f);
}

TEST(Allocator, ReusesBlocks) {
  host_cache_clear();
  void* a = host_alloc(1000);
  host_free(a, 1000);
  EXPECT_GT(host_cache_bytes(), 0u);
  void* b = host_alloc(1000);
  EXPECT_EQ(a, b);
  host_free(b, 1000);
  host_cache_clear();
  EXPECT_EQ(host_cache_bytes(), 0u);
}

TEST(Parallel, CoversRangeOnce) {
  std::vector<int> hits(1000, 0);
  parallel_for(1000, 7, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
  });
  for (int h : hits) EXPECT_EQ(h, 1);
  EXPECT_GE(num_threads(), 1);
}
