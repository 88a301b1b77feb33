// Embedding lookup: copies one weight row per id.
#include <cstring>

#include "core/parallel.h"
#include "ops/cpu/kernels.h"

namespace diffuse::ops::cpu {

void embedding(const Tensor& weight, const Tensor& ids, Tensor& out) {
  const int64_t n = ids.numel();
  const int64_t d = weight.shape()[1];
  const int64_t row_stride = weight.strides()[0], col_stride = weight.strides()[1];
  const float* w = weight.data<float>();
  float* o = out.data<float>();
  const bool i64 = ids.dtype() == DType::I64;
  const void* id_data = ids.raw_data();
  parallel_for(n, std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t id = i64 ? static_cast<const int64_t*>(id_data)[i]
                             : int64_t(static_cast<const int32_t*>(id_data)[i]);
      const float* src = w + id * row_stride;
      float* dst = o + i * d;
      if (col_stride == 1) {
        std::memcpy(dst, src, size_t(d) * sizeof(float));
      } else {
        for (int64_t j = 0; j < d; ++j) dst[j] = src[j * col_stride];
      }
    }
  });
}

}  // namespace diffuse::ops::cpu
