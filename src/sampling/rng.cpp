#include "sampling/rng.h"

#include <array>
#include <cmath>
#include <numbers>

namespace diffuse::sampling {

// ---------------------------------------------------------------- torch CPU (mt19937)

TorchCpuGenerator::TorchCpuGenerator(uint64_t seed) : engine_(uint32_t(seed & 0xffffffffu)) {}

float TorchCpuGenerator::uniform_f24() {
  return float(next_u32() & 0xFFFFFFu) * (1.0f / 16777216.0f);
}

double TorchCpuGenerator::uniform_f53() {
  uint64_t hi = next_u32();
  uint64_t lo = next_u32();
  uint64_t bits = ((hi << 32) | lo) & ((uint64_t(1) << 53) - 1);
  return double(bits) * (1.0 / 9007199254740992.0);
}

double TorchCpuGenerator::normal_double() {
  if (next_double_normal_) {
    double v = *next_double_normal_;
    next_double_normal_.reset();
    return v;
  }
  double u1 = uniform_f53();
  double u2 = uniform_f53();
  double r = std::sqrt(-2.0 * std::log1p(-u2));
  double theta = 2.0 * std::numbers::pi * u1;
  next_double_normal_ = r * std::sin(theta);
  return r * std::cos(theta);
}

// Box-Muller over one block of 16 uniforms, in place: pairs (j, j + 8). torch's SIMD kernel
// forms the angle in float (2 pi * u2, rounded); the rest is evaluated in double and rounded
// once, which lands within about 1 ulp of torch's float SIMD log/sin/cos.
static void normal_fill_16(float* d) {
  const float two_pi = 2.0f * std::numbers::pi_v<float>;
  for (int j = 0; j < 8; ++j) {
    double u1 = 1.0 - double(d[j]);
    double theta = double(two_pi * d[j + 8]);
    double radius = std::sqrt(-2.0 * std::log(u1));
    d[j] = float(radius * std::cos(theta));
    d[j + 8] = float(radius * std::sin(theta));
  }
}

void TorchCpuGenerator::randn_fill(float* out, int64_t n) {
  if (n >= 16) {
    for (int64_t i = 0; i < n; ++i) out[i] = uniform_f24();
    for (int64_t o = 0; o + 16 <= n; o += 16) normal_fill_16(out + o);
    if (n % 16 != 0) {
      // torch redraws the last 16 positions and transforms them again.
      float* tail = out + n - 16;
      for (int i = 0; i < 16; ++i) tail[i] = uniform_f24();
      normal_fill_16(tail);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = float(normal_double());
  }
}

Tensor TorchCpuGenerator::randn(const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  randn_fill(t.data<float>(), t.numel());
  return t;
}

// ---------------------------------------------------------------- CUDA (Philox-4x32-10)

static std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t(kM0) * c[0];
    uint64_t p1 = uint64_t(kM1) * c[2];
    c = {uint32_t(p1 >> 32) ^ c[1] ^ k0, uint32_t(p1), uint32_t(p0 >> 32) ^ c[3] ^ k1,
         uint32_t(p0)};
    k0 += kW0;
    k1 += kW1;
  }
  return c;
}

void CudaPhiloxGenerator::randn_fill(float* out, int64_t n) {
  const uint32_t k0 = uint32_t(seed_), k1 = uint32_t(seed_ >> 32);
  constexpr float kInv32 = 2.3283064365386963e-10f;      // 2^-32
  constexpr float kHalf = 1.1641532182693481e-10f;       // 2^-33
  constexpr float kInv32_2pi = 1.4629180792671596e-09f;  // 2 pi / 2^32
  for (int64_t i = 0; i < n; ++i) {
    auto r = philox4x32_10({offset_, 0u, uint32_t(i), uint32_t(uint64_t(i) >> 32)}, k0, k1);
    float u = std::fma(float(r[0]), kInv32, kHalf);
    float v = std::fma(float(r[1]), kInv32_2pi, kInv32_2pi * 0.5f);
    out[i] = std::sqrt(-2.0f * std::log(u)) * std::sin(v);
  }
  ++offset_;
}

Tensor CudaPhiloxGenerator::randn(const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  randn_fill(t.data<float>(), t.numel());
  return t;
}

std::unique_ptr<Generator> make_generator(const std::string& kind, uint64_t seed) {
  if (kind == "cpu") return std::make_unique<TorchCpuGenerator>(seed);
  if (kind == "cuda") return std::make_unique<CudaPhiloxGenerator>(seed);
  DF_FAIL("unknown generator kind '", kind, "' (expected cpu or cuda)");
}

}  // namespace diffuse::sampling
