// Embedding lookup: copies one weight row per id.
#include <cstring>

#include "core/half.h"
#include "core/parallel.h"
#include "ops/cpu/kernels.h"

namespace diffuse::ops::cpu {

void embedding(const Tensor& weight, const Tensor& ids, Tensor& out) {
  const int64_t n = ids.numel();
  const int64_t d = weight.shape()[1];
  const int64_t row_stride = weight.strides()[0], col_stride = weight.strides()[1];
  const DType wt = weight.dtype();  // f32, or f16/bf16 rows widened as they are copied
  const char* w = static_cast<const char*>(weight.raw_data());
  const int64_t esize = int64_t(dtype_size(wt));
  float* o = out.data<float>();
  const bool i64 = ids.dtype() == DType::I64;
  const void* id_data = ids.raw_data();
  parallel_for(n, std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t id = i64 ? static_cast<const int64_t*>(id_data)[i]
                             : int64_t(static_cast<const int32_t*>(id_data)[i]);
      const char* src = w + id * row_stride * esize;
      float* dst = o + i * d;
      if (wt == DType::F32) {
        const float* s = reinterpret_cast<const float*>(src);
        if (col_stride == 1) {
          std::memcpy(dst, s, size_t(d) * sizeof(float));
        } else {
          for (int64_t j = 0; j < d; ++j) dst[j] = s[j * col_stride];
        }
      } else {
        const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
        for (int64_t j = 0; j < d; ++j)
          dst[j] = wt == DType::BF16 ? bf16_to_float(s[j * col_stride])
                                     : f16_to_float(s[j * col_stride]);
      }
    }
  });
}

}  // namespace diffuse::ops::cpu
