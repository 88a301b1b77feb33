// CPU kernels of the backward rules (and the few forward ops src/ops lacks: reductions, exp,
// log, ...). Callers (src/autograd/fn_*.cpp) check shapes and dtypes; kernels never throw, except
// the oneDNN ones which report failures through diffuse::Error at their boundary.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace diffuse::autograd::kernels {

// ---- elementwise (elementwise.cpp) ----
// dst += src, dst contiguous f32, src any strides, same shape.
void add_inplace(Tensor& dst, const Tensor& src);
// dst *= s, dst contiguous f32.
void scale_inplace(Tensor& dst, float s);
// Sum of squares of every element (in double).
double sum_squares(const Tensor& x);

enum class Unary { Exp, Log, Sqrt, Square, Neg, Reciprocal };
Tensor unary(Unary op, const Tensor& x);
// min(max(x, lo), hi); its gradient passes where lo <= x <= hi (torch.clamp's rule).
Tensor clamp(const Tensor& x, float lo, float hi);
Tensor clamp_backward(const Tensor& x, float lo, float hi, const Tensor& g);

enum class Act { Gelu, GeluTanh, QuickGelu, Silu, Sigmoid };
// g * act'(x), same shapes.
Tensor activation_backward(Act act, const Tensor& x, const Tensor& g);

// ---- reductions (reduce.cpp) ----
// Sums x down to `shape`: shape is right-aligned against x's as in broadcasting; x's dims where
// shape has 1 (or nothing) are summed. The inverse of broadcasting `shape` up to x's shape.
Tensor sum_to(const Tensor& x, const Shape& shape);
// x broadcast up to `shape` (a contiguous copy).
Tensor broadcast_to(const Tensor& x, const Shape& shape);

// ---- normalization and softmax (norm.cpp) ----
struct NormGrads {
  Tensor dx, dweight, dbias;
};
// layer_norm over the last dim. weight may be undefined (ones).
NormGrads layer_norm_backward(const Tensor& x, const Tensor& weight, float eps, const Tensor& g,
                              bool need_dx, bool need_params);
// group_norm over [B, C, ...] (silu: the fused group_norm_silu). weight/bias may be undefined.
NormGrads group_norm_backward(const Tensor& x, int64_t groups, const Tensor& weight,
                              const Tensor& bias, float eps, bool silu, const Tensor& g,
                              bool need_dx, bool need_params);
// Softmax over the last dim: given its output y and the output's gradient g.
Tensor softmax_backward(const Tensor& y, const Tensor& g);
Tensor log_softmax(const Tensor& x);
Tensor log_softmax_backward(const Tensor& y, const Tensor& g);
// scores [N, Lq, Lk] (contiguous): key j > query i set to -inf, as ops::attention's causal mask.
void causal_mask_inplace(Tensor& scores);

// ---- lookup and resampling (misc.cpp) ----
// ids [...] i64/i32, g [..., D] -> dweight [vocab, D] (rows not looked up are zero).
Tensor embedding_backward(const Tensor& ids, const Tensor& g, int64_t vocab);
// g [B, C, 2H, 2W] -> [B, C, H, W], each 2x2 block summed.
Tensor upsample_nearest2x_backward(const Tensor& g);

// ---- convolution (conv.cpp, oneDNN) ----
struct ConvGeometry {
  int64_t stride = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
};
// g [B, Cout, Ho, Wo], w [Cout, Cin, kh, kw] f32 -> dx of shape x_shape.
Tensor conv2d_backward_data(const Tensor& g, const Tensor& w, const Shape& x_shape,
                            const ConvGeometry& p);
// x [B, Cin, H, W], g [B, Cout, Ho, Wo] -> dw of shape w_shape and (with_bias) db [Cout].
void conv2d_backward_weights(const Tensor& x, const Tensor& g, const Shape& w_shape,
                             const ConvGeometry& p, bool with_bias, Tensor& dw, Tensor& db);

}  // namespace diffuse::autograd::kernels
