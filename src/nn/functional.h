// nn::F: the differentiable functions (src/autograd/functions.h) under the name model code uses,
// as torch.nn.functional. In inference (nothing requires a gradient) each is just its op.
#pragma once
#include "autograd/functions.h"

namespace diffuse::nn {
namespace F = ::diffuse::autograd;
}  // namespace diffuse::nn
