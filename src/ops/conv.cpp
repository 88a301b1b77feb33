// Dispatch of 2-D convolution and nearest-neighbour upsampling.
#include "ops/cpu/kernels.h"
#include "ops/ops.h"
#include "ops/profile.h"
#include "ops/shape_util.h"

namespace diffuse::ops {

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, int64_t pad_top,
              int64_t pad_bottom, int64_t pad_left, int64_t pad_right) {
  check_f32(x, "conv2d", "x");
  check_weight(w, "conv2d");
  DF_CHECK(x.dim() == 4, "conv2d: input must be [B, Cin, H, W], got ", x.desc());
  DF_CHECK(w.dim() == 4, "conv2d: weight must be [Cout, Cin, kh, kw], got ", w.desc());
  DF_CHECK(x.shape()[1] == w.shape()[1], "conv2d: input ", x.desc(), " has ", x.shape()[1],
           " channels, weight ", w.desc(), " expects ", w.shape()[1]);
  DF_CHECK(x.shape()[1] > 0, "conv2d: input ", x.desc(), " has no channels");
  DF_CHECK(stride >= 1, "conv2d: stride must be >= 1, got ", stride);
  DF_CHECK(pad_top >= 0 && pad_bottom >= 0 && pad_left >= 0 && pad_right >= 0,
           "conv2d: negative padding");
  const int64_t cout = w.shape()[0], kh = w.shape()[2], kw = w.shape()[3];
  const int64_t hp = x.shape()[2] + pad_top + pad_bottom, wp = x.shape()[3] + pad_left + pad_right;
  DF_CHECK(kh >= 1 && kw >= 1 && hp >= kh && wp >= kw, "conv2d: kernel ", w.desc(),
           " larger than the padded input ", x.desc());
  Tensor bias;
  if (b.defined()) {
    check_f32(b, "conv2d", "bias");
    DF_CHECK(b.dim() == 1 && b.shape()[0] == cout, "conv2d: bias ", b.desc(),
             " does not match weight ", w.desc());
    bias = b.contiguous();
  }
  const Shape out_shape{x.shape()[0], cout, (hp - kh) / stride + 1, (wp - kw) / stride + 1};
  if (shape_numel(out_shape) == 0) return Tensor::empty(out_shape);
  Tensor out;
  ProfileScope prof(profiling() ? str("conv2d ", kh, "x", kw) : std::string(),
                    2.0 * double(shape_numel(out_shape)) * double(w.numel() / cout));
  cpu::Conv2dParams p;
  p.stride = stride;
  p.pad_top = pad_top;
  p.pad_bottom = pad_bottom;
  p.pad_left = pad_left;
  p.pad_right = pad_right;
  auto st = cpu::conv2d(x.contiguous(), w.contiguous(), bias, p, out_shape, out);
  DF_CHECK(st.empty(), "conv2d: ", st);
  return out;
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, int64_t padding) {
  return conv2d(x, w, b, stride, padding, padding, padding, padding);
}

Tensor upsample_nearest2x(const Tensor& x) {
  check_f32(x, "upsample_nearest2x", "x");
  DF_CHECK(x.dim() == 4, "upsample_nearest2x: input must be [B, C, H, W], got ", x.desc());
  const Shape& s = x.shape();
  Tensor out = Tensor::empty({s[0], s[1], 2 * s[2], 2 * s[3]});  // b c h w -> b c 2h 2w
  ProfileScope prof("upsample_nearest2x");
  cpu::upsample_nearest2x(x, out);
  return out;
}

}  // namespace diffuse::ops
