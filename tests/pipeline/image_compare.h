// An 8-bit image against a reference image tensor in [0, 1].
#pragma once
#include <algorithm>
#include <cmath>

#include "core/tensor.h"
#include "io/image.h"

namespace diffuse::test {

// The largest difference of a channel value, in [0, 1] units; `want` is [1, 3, H, W].
inline double max_pixel_difference(const io::Image& img, const Tensor& want) {
  const auto w = want.contiguous().to_float_vector();
  double worst = 0;
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < img.height; ++y)
      for (int64_t x = 0; x < img.width; ++x) {
        const double got = img.pixels[size_t((y * img.width + x) * img.channels + c)] / 255.0;
        worst = std::max(worst, std::abs(got - w[size_t((c * img.height + y) * img.width + x)]));
      }
  return worst;
}

}  // namespace diffuse::test
