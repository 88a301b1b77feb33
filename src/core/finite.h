// Whether a tensor holds only finite values: the check that turns a NaN or Inf produced by a
// stage (weights, latents, a sampler step) into a clear error naming that stage.
#pragma once
#include "core/tensor.h"

namespace diffuse {

// True when every element is finite (floating-point tensors; integer tensors always are).
// Works on any layout; reads the values once, without a copy for contiguous f32.
bool all_finite(const Tensor& t);

}  // namespace diffuse
