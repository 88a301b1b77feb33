#include <algorithm>
#include <cstring>

#include "core/parallel.h"
#include "ops/ops.h"
#include "ops/shape_util.h"

namespace diffuse::ops {

Tensor pad2d(const Tensor& x_, int64_t left, int64_t right, int64_t top, int64_t bottom) {
  check_f32(x_, "pad2d", "x");
  DF_CHECK(x_.dim() >= 2, "pad2d: x must have at least 2 dims, got ", x_.desc());
  DF_CHECK(left >= 0 && right >= 0 && top >= 0 && bottom >= 0, "pad2d: negative padding");
  Tensor x = x_.contiguous();
  const int64_t h = x.size(-2), w = x.size(-1), planes = x.numel() / std::max<int64_t>(h * w, 1);
  const int64_t ho = h + top + bottom, wo = w + left + right;
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 2] = ho;
  out_shape[out_shape.size() - 1] = wo;
  Tensor out = Tensor::zeros(out_shape);
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  parallel_for(planes, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p)
      for (int64_t i = 0; i < h; ++i)
        std::memcpy(dst + (p * ho + i + top) * wo + left, src + (p * h + i) * w,
                    size_t(w) * sizeof(float));
  });
  return out;
}

}  // namespace diffuse::ops
