// CPU kernels behind the op API (internal to src/ops). Dispatch (ops/*.cpp) has already
// checked shapes and dtypes and allocated the contiguous f32 output; kernels never throw.
// Kernels that call oneDNN report its failures through the returned Status instead.
#pragma once
#include <string>

#include "core/tensor.h"

namespace diffuse::ops::cpu {

// Empty on success, otherwise a message for the dispatcher to raise.
using Status = std::string;

// ---- elementwise (cpu/elementwise.cpp, cpu/activation.cpp) ----
enum class BinaryOp { Add, Sub, Mul, Div };
// out (contiguous, broadcast shape) = a op b; a and b may be strided and broadcast.
void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out);
// out = alpha * x + beta * y (same shapes; x, y may be strided).
void axpby(const Tensor& x, float alpha, const Tensor& y, float beta, Tensor& out);
// out = x * s + t
void affine_scalar(const Tensor& x, float s, float t, Tensor& out);

enum class Activation { Gelu, GeluTanh, QuickGelu, Silu, Sigmoid };
void activation(Activation act, const Tensor& x, Tensor& out);

// ---- lookup (cpu/embedding.cpp) ----
// weight [V, D] f32, ids i64 or i32 (all in range), out [numel(ids), D].
void embedding(const Tensor& weight, const Tensor& ids, Tensor& out);

// ---- conversions (cpu/convert.cpp) ----
// f32 -> bf16 bits, rounding to nearest even.
void f32_to_bf16(const float* src, uint16_t* dst, int64_t n);
void f32_to_bf16_serial(const float* src, uint16_t* dst, int64_t n);  // on the calling thread
// f16 or bf16 bits (`t`) -> f32.
void half_to_f32(DType t, const uint16_t* src, float* dst, int64_t n);

// ---- matrix products (cpu/matmul.cpp, oneDNN) ----
// a [..., M, K], b [..., K, N] with the same number of dims (batch dims equal or 1), each with a
// unit stride in one of its two last dims; bias [N] contiguous or undefined; out [..., M, N].
Status matmul(const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& out);
// out [M, N] = x [M, K] @ w^T + bias, with x f32 contiguous, w [N, K] f16/bf16 contiguous
// (packed once as bf16, cached), bias [N] f32 or undefined; bf16 products, f32 accumulation.
Status linear_lowp(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out);
// Row-major single-precision GEMM (dnnl_sgemm): C = alpha * op(A) op(B) + beta * C.
Status sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
             int64_t ldc);

// ---- normalization (cpu/norm.cpp, cpu/softmax.cpp) ----
// x contiguous [rows, D]; weight/bias [D] contiguous or undefined.
void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out);
// x contiguous [B, C, S...]; weight/bias [C] contiguous or undefined; silu fused after affine.
void group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                float eps, bool silu, Tensor& out);
// x contiguous [rows, D], softmax over D.
void softmax(const Tensor& x, Tensor& out);

// ---- attention (cpu/attention.cpp) ----
// q [B, H, Lq, Dh], k/v [B, H, Lk, Dh] with unit stride in the last dim; out contiguous.
Status attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                 Tensor& out);
// The same with bf16 products and f32 accumulation (cpu/attention_bf16.cpp).
Status attention_bf16(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                      Tensor& out);

// ---- convolution (cpu/conv.cpp, oneDNN) ----
struct Conv2dParams {
  int64_t stride = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
};
// x contiguous [B, Cin, H, W], w contiguous [Cout, Cin, kh, kw], bias [Cout] or undefined.
// w f32: f32 convolution; w f16/bf16: bf16 convolution (weights packed once and cached).
// out is allocated here as f32 `out_shape`; where the primitive writes another layout, only
// after the primitive ran and its reordered input was freed (a lower peak).
Status conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p,
              const Shape& out_shape, Tensor& out);

// ---- resampling and shape (cpu/upsample.cpp, cpu/cat.cpp) ----
// x [B, C, H, W] (any strides) -> out [B, C, 2H, 2W]
void upsample_nearest2x(const Tensor& x, Tensor& out);
// xs contiguous, same dtype, same shapes except `dim`.
void cat(const std::vector<Tensor>& xs, int64_t dim, Tensor& out);

}  // namespace diffuse::ops::cpu
