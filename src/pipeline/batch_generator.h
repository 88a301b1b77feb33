// Noise for a batch in which image i has its own generator seeded seed + i (as A1111 does),
// so each image can be reproduced alone from its seed. With one image it is exactly the
// seeded generator, as diffusers draws it.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "sampling/rng.h"

namespace diffuse::pipeline {

class BatchGenerator : public sampling::Generator {
 public:
  BatchGenerator(const std::string& kind, int64_t first_seed, int64_t batch);
  // shape[0] must be the batch size (each image's share comes from its own generator).
  Tensor randn(const Shape& shape) override;
  void randn_fill(float* out, int64_t n) override;

 private:
  std::vector<std::unique_ptr<sampling::Generator>> gens_;
};

}  // namespace diffuse::pipeline
