// One module of a LoRA file: the change it makes to one layer's weight, whatever the layer
// belongs to (UNet, text encoder). The kinds kohya's sd-scripts and LyCORIS write, with the
// formulas AUTOMATIC1111's network code applies (extensions-builtin/Lora/network_*.py):
//   LoRA / LoCon   up [out, r(, 1, 1)] @ down [r, in(, kh, kw)]; Tucker ("CP") with
//                  mid [r, r, kh, kw]: sum_nm mid[n, m, k, l] up[i, n] down[m, j]
//   LoHa           (w1_a @ w1_b) * (w2_a @ w2_b), w?_a [out, r], w?_b [r, in * kh * kw];
//                  Tucker with t1, t2 [r, r, kh, kw], w?_a [r, out], w?_b [r, in]
//   LoKr           kron(w1, w2), each factor full (w1, w2) or a product (w1_a @ w1_b,
//                  w2_a @ w2_b); w2 Tucker with t2 [r, r, kh, kw], w2_a [r, c], w2_b [r, d]
//   full           diff (the whole change), diff_b added to the bias
// The weight becomes W + multiplier * scale * delta, scale = alpha / dim where the module has a
// dim (LoRA: rows of down; LoHa: rows of w1_b; LoKr: rows of w2_b, else of w1_b; none for a
// LoKr of two full factors and for full diff), else 1. Only diff_b changes a bias (b + m * diff_b).
#pragma once
#include <string>
#include <utility>

#include "core/tensor.h"

namespace diffuse::models {

enum class LoraType { Lora, LoHa, LoKr, Full };
const char* lora_type_name(LoraType t);  // "LoRA", "LoHa", "LoKr", "full"

struct LoraModule {
  LoraModule() = default;
  // A plain LoRA module.
  LoraModule(Tensor down_, Tensor up_, float alpha_)
      : down(std::move(down_)), up(std::move(up_)), alpha(alpha_) {}

  Tensor down;      // LoRA: [r, in] or [r, in, kh, kw]
  Tensor up;        // LoRA: [out, r] or [out, r, 1, 1]
  float alpha = 0;  // the file's alpha; dim() when the file has none (scale 1)
  LoraType type = LoraType::Lora;
  Tensor mid;                             // LoRA Tucker: [r, r, kh, kw]
  Tensor w1, w2;                          // LoKr full factors
  Tensor w1_a, w1_b, w2_a, w2_b, t1, t2;  // LoHa and LoKr factored factors, Tucker cores
  Tensor diff, diff_b;                    // full: the weight's and the bias' change

  // The rank that divides alpha, or 0 when the module has none (scale 1).
  int64_t dim() const;
  float scale() const { return dim() > 0 ? alpha / float(dim()) : 1.f; }

  // The shape of the change as the factors give it ([out, in] or [out, in, kh, kw]; LoHa
  // without Tucker and factored LoKr give [out, in * kh * kw]). Throws naming `name` and the
  // factors' shapes when they are missing or do not fit together.
  Shape delta_shape(const std::string& name) const;
  // True when the change fits a layer weight's shape `w` (a Linear's [out, in] or a Conv2d's
  // [out, in, kh, kw]): same rows and size, same kernel when both are 4-D; a 1x1 convolution's
  // change fits a Linear and the other way round. The module's own shapes must be consistent.
  bool fits(const Shape& w) const;
  // multiplier * scale * delta in f32, shaped as `weight_shape`. Throws naming `name` when the
  // shapes do not fit.
  Tensor delta(float multiplier, const Shape& weight_shape, const std::string& name) const;
  // multiplier * diff_b in f32, or an undefined tensor when the module leaves the bias alone.
  Tensor bias_delta(float multiplier) const;
};

}  // namespace diffuse::models
