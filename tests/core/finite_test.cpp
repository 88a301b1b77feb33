// all_finite: NaN and Inf anywhere, in any dtype or layout, are found.
#include <gtest/gtest.h>

#include <limits>

#include "core/finite.h"

using namespace diffuse;

namespace {

TEST(Finite, FindsNanAndInfInEveryDtypeAndLayout) {
  Tensor t = Tensor::zeros({3, 5});
  EXPECT_TRUE(all_finite(t));
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    Tensor u = Tensor::zeros({3, 5});
    u.data<float>()[13] = bad;
    EXPECT_FALSE(all_finite(u));
    EXPECT_FALSE(all_finite(u.to(DType::F16)));
    EXPECT_FALSE(all_finite(u.to(DType::BF16)));
  }
  Tensor big = Tensor::zeros({2});
  big.data<float>()[1] = 1e30f;  // finite in f32, Inf in f16
  EXPECT_TRUE(all_finite(big));
  EXPECT_FALSE(all_finite(big.to(DType::F16)));
  EXPECT_TRUE(all_finite(Tensor::zeros({4}, DType::I64)));
}

}  // namespace
