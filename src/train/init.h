// Initial weights of a model trained from scratch, as torch's layers initialize themselves:
// linear and convolution weights and biases uniform in +-1/sqrt(fan_in) (kaiming_uniform with
// a = sqrt(5)), norm weights 1 and biases 0, embeddings and CLIP's class token normal with std
// 0.02 (transformers' CLIP init), CLIP's logit scale log(1 / 0.07).
#pragma once
#include <cstdint>

#include "nn/module.h"

namespace diffuse::train {

// Fills every parameter of `m` (f32, owned) from a generator seeded with `seed`, in name order.
void init_parameters(nn::Module& m, uint64_t seed);

}  // namespace diffuse::train
