#include <gtest/gtest.h>

#include <cmath>

#include "core/half.h"

using namespace diffuse;

// Every half value converts to float and back unchanged.
TEST(Half, AllF16RoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = f16_to_float(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(float_to_f16(f), uint16_t(h)) << h;
  }
}

// Rounding to nearest even at the midpoint between two halves.
TEST(Half, RoundsToNearestEven) {
  float one = 1.f, ulp = 1.f / 1024.f;
  EXPECT_EQ(f16_to_float(float_to_f16(one + ulp / 2)), one);                 // tie -> even
  EXPECT_EQ(f16_to_float(float_to_f16(one + 1.5f * ulp)), one + 2 * ulp);    // tie -> even
  EXPECT_EQ(f16_to_float(float_to_f16(one + 0.6f * ulp)), one + ulp);
  EXPECT_TRUE(std::isinf(f16_to_float(float_to_f16(1e6f))));
  EXPECT_EQ(f16_to_float(float_to_f16(5.960464477539063e-08f)), 5.960464477539063e-08f);
}

TEST(Half, Bf16) {
  for (uint32_t h = 0; h < 65536; h += 7) {
    float f = bf16_to_float(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(float_to_bf16(f), uint16_t(h));
  }
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.00390625f)), 1.0f);  // tie -> even
}
