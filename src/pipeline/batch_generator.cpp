#include "pipeline/batch_generator.h"

#include <cstring>

namespace diffuse::pipeline {

BatchGenerator::BatchGenerator(const std::string& kind, int64_t first_seed, int64_t batch) {
  for (int64_t i = 0; i < batch; ++i)
    gens_.push_back(sampling::make_generator(kind, uint64_t(first_seed + i)));
}

Tensor BatchGenerator::randn(const Shape& shape) {
  if (gens_.size() == 1) return gens_[0]->randn(shape);
  DF_CHECK(!shape.empty() && shape[0] == int64_t(gens_.size()), "noise of shape ",
           shape_str(shape), " for a batch of ", gens_.size());
  Tensor out = Tensor::empty(shape);
  const int64_t per = out.numel() / shape[0];
  for (size_t i = 0; i < gens_.size(); ++i) gens_[i]->randn_fill(out.data<float>() + int64_t(i) * per, per);
  return out;
}

void BatchGenerator::randn_fill(float* out, int64_t n) {
  if (gens_.size() == 1) return gens_[0]->randn_fill(out, n);
  DF_CHECK(n % int64_t(gens_.size()) == 0, "noise of ", n, " values for a batch of ", gens_.size());
  const int64_t per = n / int64_t(gens_.size());
  for (size_t i = 0; i < gens_.size(); ++i) gens_[i]->randn_fill(out + int64_t(i) * per, per);
}

}  // namespace diffuse::pipeline
