// The vectorizable exp used by softmax, sigmoid, SiLU and attention: accuracy over the whole
// float range and its special values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/cpu/vec_math.h"

using diffuse::ops::cpu::exp_f;

TEST(OpsVecMath, ExpAccuracy) {
  double worst = 0;
  float worst_x = 0;
  // Normal results: relative error within 2 ulp (2^-23).
  for (float x = -87.3f; x < 88.7f; x += 0.000913f) {
    const double r = std::exp(double(x));
    const double e = std::abs(double(exp_f(x)) - r) / r;
    if (e > worst) {
      worst = e;
      worst_x = x;
    }
  }
  EXPECT_LE(worst, 2.4e-7) << "at x = " << worst_x;
  // Subnormal results keep their absolute accuracy.
  for (float x = -103.f; x < -87.3f; x += 0.01f)
    EXPECT_NEAR(exp_f(x), std::exp(double(x)), 1e-44) << x;
}

TEST(OpsVecMath, ExpSpecialValues) {
  EXPECT_EQ(exp_f(0.f), 1.f);
  EXPECT_EQ(exp_f(-200.f), 0.f);
  EXPECT_EQ(exp_f(-std::numeric_limits<float>::infinity()), 0.f);
  EXPECT_TRUE(std::isinf(exp_f(89.f)));
  EXPECT_TRUE(std::isinf(exp_f(std::numeric_limits<float>::infinity())));
  EXPECT_TRUE(std::isnan(exp_f(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_NEAR(exp_f(88.7f), std::exp(double(88.7f)), 3e-7 * std::exp(double(88.7f)));
}

TEST(OpsVecMath, ErfAccuracy) {
  using diffuse::ops::cpu::erf_f;
  double worst = 0;
  for (float x = -8.f; x < 8.f; x += 0.000731f)
    worst = std::max(worst, std::abs(double(erf_f(x)) - std::erf(double(x))));
  EXPECT_LE(worst, 5e-7);  // 1.5e-7 of the approximation plus float rounding
  EXPECT_EQ(erf_f(0.f), 0.f);
  EXPECT_EQ(erf_f(30.f), 1.f);
  EXPECT_EQ(erf_f(-30.f), -1.f);
  EXPECT_EQ(erf_f(std::numeric_limits<float>::infinity()), 1.f);
  EXPECT_EQ(erf_f(-std::numeric_limits<float>::infinity()), -1.f);
}
