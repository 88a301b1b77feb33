// Backward rules of conv2d (oneDNN backward primitives), zero padding and 2x upsampling.
#include "autograd/functions.h"
#include "autograd/kernels/kernels.h"
#include "ops/ops.h"

namespace diffuse::autograd {

namespace {
using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;
}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w_, const Tensor& b, int64_t stride, int64_t pad_top,
              int64_t pad_bottom, int64_t pad_left, int64_t pad_right) {
  // autocast: the bf16 copy runs the convolution (and the input gradient); w_ gets the gradient
  const Tensor w = autocast_bf16() && w_.dtype() == DType::F32 ? w_.to(DType::BF16) : w_;
  Tensor out = ops::conv2d(x, w, b, stride, pad_top, pad_bottom, pad_left, pad_right);
  if (!needs_graph(x, w_, b)) return out;
  const kernels::ConvGeometry geo{stride, pad_top, pad_bottom, pad_left, pad_right};
  return record("conv2d", out, {&x, &w_, &b},
                [x = detach(x), w = detach(w), geo](const Tensor& g, const Needs& n) -> Grads {
                  Grads r(3);
                  const Tensor wf = w.dtype() == DType::F32 ? w : w.to(DType::F32);
                  if (n[0]) r[0] = kernels::conv2d_backward_data(g, wf, x.shape(), geo);
                  if (n[1]) {
                    kernels::conv2d_backward_weights(x, g, w.shape(), geo, n[2], r[1], r[2]);
                  } else if (n[2]) {  // [B, Cout, Ho, Wo] -> [Cout]
                    r[2] = kernels::sum_to(g, {w.size(0), 1, 1}).view({w.size(0)});
                  }
                  return r;
                });
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, int64_t padding) {
  return conv2d(x, w, b, stride, padding, padding, padding, padding);
}

Tensor pad2d(const Tensor& x, int64_t left, int64_t right, int64_t top, int64_t bottom) {
  Tensor out = ops::pad2d(x, left, right, top, bottom);
  if (!needs_graph(x)) return out;
  return record(
      "pad2d", out, {&x},
      [left, top, h = x.size(-2), w = x.size(-1)](const Tensor& g, const Needs&) -> Grads {
        return {g.slice(-2, top, top + h).slice(-1, left, left + w).contiguous()};
      });
}

Tensor upsample_nearest2x(const Tensor& x) {
  Tensor out = ops::upsample_nearest2x(x);
  if (!needs_graph(x)) return out;
  return record("upsample_nearest2x", out, {&x}, [](const Tensor& g, const Needs&) -> Grads {
    return {kernels::upsample_nearest2x_backward(g)};
  });
}

}  // namespace diffuse::autograd
