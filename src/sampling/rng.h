// Seeded random number generators that reproduce PyTorch's `randn` streams, so that a seed
// gives the same noise here as in diffusers (CPU generator) or A1111 (CUDA generator).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "core/tensor.h"

namespace diffuse::sampling {

// The interface samplers draw their noise from: one standard-normal f32 tensor per call,
// consecutive calls continuing the generator's stream.
class Generator {
 public:
  virtual ~Generator() = default;
  virtual Tensor randn(const Shape& shape) = 0;
  // Fills out[0..n) like randn({n}).
  virtual void randn_fill(float* out, int64_t n) = 0;
};

// torch.Generator("cpu").manual_seed(seed): mt19937 seeded with the low 32 bits of the seed.
// n >= 16 values come from torch's vectorized Box-Muller over 24-bit float uniforms (within
// about 1 ulp of torch's SIMD math); n < 16 from the double path with its cached second value
// (bit-exact). The cache lives in the generator, as in torch.
class TorchCpuGenerator : public Generator {
 public:
  explicit TorchCpuGenerator(uint64_t seed);
  Tensor randn(const Shape& shape) override;
  void randn_fill(float* out, int64_t n) override;

  uint32_t next_u32() { return uint32_t(engine_()); }

 private:
  float uniform_f24();   // (next32 & 0xFFFFFF) / 2^24
  double uniform_f53();  // two draws (high half first), 53 bits / 2^53
  double normal_double();

  std::mt19937 engine_;
  std::optional<double> next_double_normal_;
};

// The noise of torch.Generator("cuda").manual_seed(seed), re-created on the CPU as A1111 and
// stable-diffusion.cpp do: element i of draw d is Philox-4x32-10 at counter (d, 0, i, 0) with
// key (seed lo, seed hi), mapped by one Box-Muller sine. Draw 0 equals torch's first draw; later
// draws follow A1111's convention (counter word 0 bumped once per draw).
class CudaPhiloxGenerator : public Generator {
 public:
  explicit CudaPhiloxGenerator(uint64_t seed) : seed_(seed) {}
  Tensor randn(const Shape& shape) override;
  void randn_fill(float* out, int64_t n) override;

 private:
  uint64_t seed_;
  uint32_t offset_ = 0;
};

// "cpu" (torch CPU, diffusers' default) or "cuda" (A1111's GPU noise).
std::unique_ptr<Generator> make_generator(const std::string& kind, uint64_t seed);

}  // namespace diffuse::sampling
