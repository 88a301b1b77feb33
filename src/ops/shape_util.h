// Shape helpers shared by the op dispatchers: broadcasting and dim checks.
#pragma once
#include "core/tensor.h"

namespace diffuse::ops {

// numpy broadcasting of two shapes; throws naming both shapes when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Checks a float32 CPU tensor, naming the op and argument in the error.
void check_f32(const Tensor& t, const char* op, const char* arg);

}  // namespace diffuse::ops
