// Nearest-neighbour 2x upsampling: each input row becomes two output rows of doubled pixels.
#include <cstring>

#include "core/parallel.h"
#include "ops/cpu/kernels.h"

namespace diffuse::ops::cpu {

void upsample_nearest2x(const Tensor& x, Tensor& out) {
  const int64_t B = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  const Shape& st = x.strides();
  const float* xp = x.data<float>();
  float* op = out.data<float>();
  const int64_t W2 = 2 * W;
  parallel_for(B * C * H, std::max<int64_t>(1, 4096 / std::max<int64_t>(W, 1)),
               [&](int64_t r0, int64_t r1) {
                 for (int64_t r = r0; r < r1; ++r) {
                   const int64_t h = r % H, bc = r / H;
                   const int64_t b = bc / C, c = bc % C;
                   const float* src = xp + b * st[0] + c * st[1] + h * st[2];
                   float* dst = op + (bc * 2 * H + 2 * h) * W2;  // row 2h of plane bc
                   for (int64_t w = 0; w < W; ++w) dst[2 * w] = dst[2 * w + 1] = src[w * st[3]];
                   std::memcpy(dst + W2, dst, size_t(W2) * sizeof(float));
                 }
               });
}

}  // namespace diffuse::ops::cpu
