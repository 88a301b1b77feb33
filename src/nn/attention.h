// Multi-head attention over already-projected q, k, v, as every model here uses it.
#pragma once
#include "core/tensor.h"

namespace diffuse::nn {

// q [B, Lq, H*Dh], k and v [B, Lk, H*Dh] -> [B, Lq, H*Dh]; scale = Dh^-0.5.
Tensor multi_head_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                            bool causal);

}  // namespace diffuse::nn
