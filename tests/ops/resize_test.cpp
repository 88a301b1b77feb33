// ops::resize against values worked out by hand from the definitions of torch's interpolate
// and PIL's filters, and its errors. (The latent upscalers against torch itself: tests/pipeline
// hires_test.cpp, on the reference's latents.)
#include <gtest/gtest.h>

#include <cmath>

#include "ops/ops.h"
#include "ops_test_util.h"

using namespace diffuse;
using diffuse::test::randn;

namespace {

std::vector<float> resized(const std::vector<float>& v, Shape s, int64_t h, int64_t w,
                           ops::ResizeMode m, bool aa) {
  return ops::resize(Tensor::from_vector(v, s), h, w, m, aa).to_float_vector();
}

void expect_near_all(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 1e-6 * (1 + std::fabs(want[i]))) << "at " << i;
}

}  // namespace

TEST(OpsResize, PlainBilinearClampsTheSource) {
  // 2 -> 4: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (last index: no right neighbour)
  expect_near_all(resized({0, 1}, {1, 1, 1, 2}, 1, 4, ops::ResizeMode::Bilinear, false),
                  {0, 0.25f, 0.75f, 1});
}

TEST(OpsResize, NearestDoublingEqualsUpsampleNearest2x) {
  Tensor x = randn({2, 3, 5, 7}, 3);
  EXPECT_EQ(ops::resize(x, 10, 14, ops::ResizeMode::Nearest, false).to_float_vector(),
            ops::upsample_nearest2x(x).to_float_vector());
  // 3 -> 2: floor(i * 1.5) = 0, 1
  expect_near_all(resized({5, 6, 7}, {1, 1, 1, 3}, 1, 2, ops::ResizeMode::Nearest, false), {5, 6});
}

TEST(OpsResize, AntialiasedBilinearHalvingIsPilsTriangle) {
  // 8 -> 4: taps 2i-1 .. 2i+2 with weights 1/4, 3/4, 3/4, 1/4 (/2), clipped and renormalised
  const std::vector<float> v = {1, 2, 4, 8, 16, 32, 64, 128};
  std::vector<float> want;
  for (int i = 0; i < 4; ++i) {
    double acc = 0, total = 0;
    const double w[4] = {0.25, 0.75, 0.75, 0.25};
    for (int k = 0; k < 4; ++k) {
      const int j = 2 * i - 1 + k;
      if (j < 0 || j >= 8) continue;
      acc += w[k] * v[size_t(j)];
      total += w[k];
    }
    want.push_back(float(acc / total));
  }
  expect_near_all(resized(v, {1, 1, 1, 8}, 1, 4, ops::ResizeMode::Bilinear, true), want);
}

TEST(OpsResize, PlainBicubicUsesKeysMinusThreeQuarters) {
  // 4 -> 8, output 3: source 1.25 -> taps 0..3 at distances 1.25, 0.25, 0.75, 1.75
  const double a = -0.75;
  auto k = [&](double x) {
    x = std::fabs(x);
    return x < 1 ? ((a + 2) * x - (a + 3)) * x * x + 1 : (((x - 5) * x + 8) * x - 4) * a;
  };
  const std::vector<float> v = {3, -1, 2, 5};
  const double want = k(1.25) * 3 + k(0.25) * -1 + k(0.75) * 2 + k(1.75) * 5;
  EXPECT_NEAR(resized(v, {1, 1, 1, 4}, 1, 8, ops::ResizeMode::Bicubic, false)[3], want, 1e-5);
}

TEST(OpsResize, FiltersKeepConstantsAndMixBothAxes) {
  Tensor c = Tensor::full({1, 2, 5, 6}, 0.75f);
  for (auto m : {ops::ResizeMode::Bilinear, ops::ResizeMode::Bicubic, ops::ResizeMode::Lanczos})
    for (auto [h, w] : {std::pair<int64_t, int64_t>{10, 12}, {3, 2}, {7, 13}}) {
      auto out = ops::resize(c, h, w, m, true).to_float_vector();
      ASSERT_EQ(out.size(), size_t(2 * h * w));
      for (float f : out) ASSERT_NEAR(f, 0.75f, 1e-5);
    }
  // separable: resizing rows then columns equals resizing both at once
  Tensor x = randn({1, 1, 6, 9}, 5);
  Tensor both = ops::resize(x, 12, 4, ops::ResizeMode::Lanczos, true);
  Tensor two = ops::resize(ops::resize(x, 6, 4, ops::ResizeMode::Lanczos, true), 12, 4,
                           ops::ResizeMode::Lanczos, true);
  expect_near_all(both.to_float_vector(), two.to_float_vector());
}

TEST(OpsResize, ErrorsNameTheProblem) {
  Tensor x = randn({1, 1, 4, 4}, 1);
  EXPECT_THROW(ops::resize(x, 0, 4, ops::ResizeMode::Bilinear, false), Error);
  EXPECT_THROW(ops::resize(x, 4, 4, ops::ResizeMode::Lanczos, false), Error);
  EXPECT_THROW(ops::resize(randn({4, 4}, 1), 8, 8, ops::ResizeMode::Bilinear, false), Error);
}
