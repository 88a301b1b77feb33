// The op API. Each op checks its preconditions here (shapes, dtypes, devices) and then
// dispatches to a kernel in cpu/ (or cuda/ when built with CUDA); kernels never throw.
// All ops return new contiguous tensors; inputs may be strided views.
#pragma once
#include "core/tensor.h"

namespace diffuse::ops {

// ---- precision ----
// Weights of linear, conv2d and embedding may be f32 (exact f32 products) or f16/bf16 (inference
// weights: products in bf16 with f32 accumulation, weights packed once into the kernels' layout
// and cached, so such weights must not change after their first use). Activations are f32.
// True when the CPU has native bf16 dot products (AVX512_BF16), where bf16 is the fast path.
bool cpu_has_native_bf16();
// Hands the whole memory pages inside `t` back to the OS when `t` lies in a memory-mapped file
// (MADV_PAGEOUT, a hint: no data is lost, the pages are re-read if touched again); other
// memory is left alone. For weights that were converted or packed and whose source is no
// longer read.
void release_pages(const Tensor& t);
// Drops every packed copy of f16/bf16 weights (and the memory it holds). Call it after changing
// such weights in place (e.g. merging a LoRA into them); freed weights need no call.
void clear_weight_cache();

// Precision of the products on the calling thread: f32 (the default, exact) or bf16 (inputs
// rounded to bf16, f32 accumulation). It rules the products between two activations
// (attention) and those with f32 weights (linear, convolution); f16/bf16 weights always run
// bf16 products. A pipeline running a bf16 model sets it for the duration of the model's calls
// with a PrecisionScope. Under bf16 an f32 weight is packed to bf16 once and the packing cached
// while the weight's storage lives: weights must not change in place inside such a scope.
enum class ComputePrecision { F32, BF16 };
ComputePrecision compute_precision();
// Whether a product with weight `w` runs in bf16 (see above).
bool bf16_products(const Tensor& w);
class PrecisionScope {
 public:
  explicit PrecisionScope(ComputePrecision p);
  ~PrecisionScope();
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  ComputePrecision prev_;
};

// ---- elementwise (f32) ----
// Binary ops broadcast numpy-style: shapes are right-aligned, size-1 dims stretch.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, float s);                            // x * s
Tensor add_scalar(const Tensor& x, float s);                       // x + s
Tensor axpby(const Tensor& x, float a, const Tensor& y, float b);  // a*x + b*y, same shape
Tensor gelu(const Tensor& x);                                      // exact (erf) GELU
Tensor gelu_tanh(const Tensor& x);                                 // tanh approximation
Tensor quick_gelu(const Tensor& x);                                // x * sigmoid(1.702 x)
Tensor silu(const Tensor& x);
Tensor sigmoid(const Tensor& x);

// ---- lookup ----
// weight [V, D], ids integer tensor of any shape -> [...ids, D]. Ids out of range are an error.
Tensor embedding(const Tensor& weight, const Tensor& ids);

// ---- matrix products (oneDNN) ----
// x [..., in], w [out, in], b [out] or undefined -> [..., out]  (x @ w^T + b)
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());
// a [..., M, K], b [..., K, N] -> [..., M, N]; leading dims broadcast.
Tensor matmul(const Tensor& a, const Tensor& b);

// ---- normalization ----
// Normalizes over the last dim. weight/bias [D] (may be undefined).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
// x [B, C, ...], normalizes each of `groups` channel groups over (C/groups, ...).
Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                  float eps);
// group_norm followed by SiLU, in one pass (the ResNet blocks' norm + activation).
Tensor group_norm_silu(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                       float eps);
// softmax over the last dim.
Tensor softmax(const Tensor& x);

// ---- attention ----
// q [B, H, Lq, Dh], k and v [B, H, Lk, Dh] -> [B, H, Lq, Dh].
// softmax(q k^T * scale (+ causal mask)) v, computed in blocks so the full Lq x Lk matrix
// is never held at once for long sequences.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal);

// ---- convolution (oneDNN) ----
// x [B, Cin, H, W], w [Cout, Cin, kh, kw], b [Cout] or undefined -> [B, Cout, Ho, Wo].
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, int64_t padding);
// Asymmetric zero padding, e.g. the VAE encoder's downsampling pad of (0, 1, 0, 1).
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, int64_t pad_top,
              int64_t pad_bottom, int64_t pad_left, int64_t pad_right);
// zero padding of the last two dims: [B, C, H, W] -> [B, C, H+top+bottom, W+left+right]
Tensor pad2d(const Tensor& x, int64_t left, int64_t right, int64_t top, int64_t bottom);
// nearest-neighbour 2x upsampling: [B, C, H, W] -> [B, C, 2H, 2W]
Tensor upsample_nearest2x(const Tensor& x);

// ---- resizing ----
enum class ResizeMode { Nearest, Bilinear, Bicubic, Lanczos };
// [B, C, H, W] -> [B, C, height, width], as torch.nn.functional.interpolate(x, size, mode,
// align_corners=False, antialias): plain bilinear clamps its source, plain bicubic is Keys'
// a = -0.75 with clamped borders; antialiased bilinear/bicubic are PIL's filters (bicubic
// a = -0.5), stretched when shrinking and renormalised at the borders. Lanczos (a = 3) is PIL's
// and needs antialias; nearest ignores it.
Tensor resize(const Tensor& x, int64_t height, int64_t width, ResizeMode mode, bool antialias);

// ---- shape ----
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);

}  // namespace diffuse::ops
