// Backward kernels of the embedding lookup and of nearest-neighbour upsampling.
#include "autograd/kernels/kernels.h"
#include "core/parallel.h"

namespace diffuse::autograd::kernels {

Tensor embedding_backward(const Tensor& ids_, const Tensor& g_, int64_t vocab) {
  const Tensor ids = ids_.contiguous(), g = g_.contiguous();
  const int64_t n = ids.numel(), d = g.shape().back();
  Tensor out = Tensor::zeros({vocab, d});
  float* po = out.data<float>();
  const float* pg = g.data<float>();
  const bool i64 = ids.dtype() == DType::I64;
  const int64_t* p64 = i64 ? ids.data<int64_t>() : nullptr;
  const int32_t* p32 = i64 ? nullptr : ids.data<int32_t>();
  // Rows are split by column blocks so that repeated ids never race.
  parallel_for(d, 16, [&](int64_t c0, int64_t c1) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t id = i64 ? p64[i] : int64_t(p32[i]);
      for (int64_t c = c0; c < c1; ++c) po[id * d + c] += pg[i * d + c];
    }
  });
  return out;
}

Tensor upsample_nearest2x_backward(const Tensor& g_) {
  const Tensor g = g_.contiguous();
  const Shape& s = g.shape();  // [B, C, 2H, 2W]
  const int64_t planes = s[0] * s[1], h = s[2] / 2, w = s[3] / 2;
  Tensor out = Tensor::empty({s[0], s[1], h, w});
  const float* pg = g.data<float>();
  float* po = out.data<float>();
  parallel_for(planes, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const float* src = pg + p * 4 * h * w;
      float* dst = po + p * h * w;
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) {
          const float* r0 = src + (2 * i) * (2 * w) + 2 * j;
          const float* r1 = r0 + 2 * w;
          dst[i * w + j] = (r0[0] + r0[1]) + (r1[0] + r1[1]);
        }
    }
  });
  return out;
}

}  // namespace diffuse::autograd::kernels
