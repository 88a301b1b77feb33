// Softmax over the last dim, one row at a time (max-subtracted; sum in double).
#include "core/parallel.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/reduce.h"

namespace diffuse::ops::cpu {

void softmax(const Tensor& x, Tensor& out) {
  const int64_t d = x.shape().empty() ? 1 : x.shape().back();
  if (d == 0) return;
  const int64_t rows = x.numel() / d;
  const float* xp = x.data<float>();
  float* op = out.data<float>();
  parallel_for(rows, std::max<int64_t>(1, 8192 / d), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) softmax_row(xp + r * d, op + r * d, d);
  });
}

}  // namespace diffuse::ops::cpu
