// Shape helpers shared by the op dispatchers: broadcasting and dim checks.
#pragma once
#include "core/tensor.h"

namespace diffuse::ops {

// numpy broadcasting of two shapes; throws naming both shapes when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Checks a float32 CPU tensor, naming the op and argument in the error.
void check_f32(const Tensor& t, const char* op, const char* arg);
// Checks a weight of linear/conv2d/embedding: f32, or f16/bf16 (inference weights).
void check_weight(const Tensor& t, const char* op);
// `t` as f32: itself when f32, a widened copy when f16/bf16; other dtypes are an error.
Tensor as_f32(const Tensor& t, const char* op, const char* arg);

}  // namespace diffuse::ops
