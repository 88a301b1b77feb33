// The differentiable op API: the functions of ops/ops.h (same names, same arguments), plus the
// views of core::Tensor and the reductions and losses training needs. Each runs the op; when
// grad mode is on and an input requires a gradient it also records the op's backward rule.
// Otherwise it is the op itself, with no extra work: model code calls these in inference too.
#pragma once
#include <vector>

#include "autograd/autograd.h"

namespace diffuse::autograd {

// ---- elementwise (broadcasting as ops::add; gradients are summed back to each input's shape) --
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, float s);
Tensor add_scalar(const Tensor& x, float s);
Tensor neg(const Tensor& x);
Tensor gelu(const Tensor& x);
Tensor gelu_tanh(const Tensor& x);
Tensor quick_gelu(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor square(const Tensor& x);
// min(max(x, lo), hi); the gradient passes where lo <= x <= hi.
Tensor clamp(const Tensor& x, float lo, float hi);

// ---- lookup and products ----
Tensor embedding(const Tensor& weight, const Tensor& ids);
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());
Tensor matmul(const Tensor& a, const Tensor& b);

// ---- normalization ----
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                  float eps);
Tensor group_norm_silu(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                       float eps);
Tensor softmax(const Tensor& x);      // over the last dim
Tensor log_softmax(const Tensor& x);  // over the last dim

// ---- attention (backward recomputes the probabilities, a chunk of heads at a time) ----
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal);

// ---- convolution and resampling ----
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, int64_t padding);
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, int64_t pad_top,
              int64_t pad_bottom, int64_t pad_left, int64_t pad_right);
Tensor pad2d(const Tensor& x, int64_t left, int64_t right, int64_t top, int64_t bottom);
Tensor upsample_nearest2x(const Tensor& x);

// ---- shape: views of the input where core::Tensor makes views ----
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
Tensor view(const Tensor& x, const Shape& shape);
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor permute(const Tensor& x, const std::vector<int64_t>& order);
Tensor transpose(const Tensor& x, int64_t a, int64_t b);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end);
Tensor select(const Tensor& x, int64_t dim, int64_t index);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor contiguous(const Tensor& x);

// ---- reductions ----
// Sums x down to a shape it broadcasts from (right-aligned; summed where shape has 1).
Tensor sum_to(const Tensor& x, const Shape& shape);
Tensor sum(const Tensor& x);  // all elements -> a 0-dim tensor
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim);

// ---- losses (means, 0-dim) ----
Tensor mse_loss(const Tensor& input, const Tensor& target);
// logits [N, C], targets integer [N] -> mean over N of -log_softmax(logits)[i, target_i].
Tensor cross_entropy(const Tensor& logits, const Tensor& targets);

}  // namespace diffuse::autograd
