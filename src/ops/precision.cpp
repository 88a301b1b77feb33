// CPU feature detection for the precision choice, and the per-thread activation precision.
#include <cpuid.h>

#include "ops/ops.h"

namespace diffuse::ops {

bool cpu_has_native_bf16() {
  static const bool has = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    // CPUID leaf 7, sub-leaf 1: EAX bit 5 is AVX512_BF16.
    if (__get_cpuid_max(0, nullptr) < 7) return false;
    __cpuid_count(7, 1, a, b, c, d);
    return (a & (1u << 5)) != 0;
  }();
  return has;
}

namespace {
thread_local ComputePrecision t_precision = ComputePrecision::F32;
}  // namespace

ComputePrecision compute_precision() {
  return t_precision;
}

bool bf16_products(const Tensor& w) {
  return w.dtype() != DType::F32 || t_precision == ComputePrecision::BF16;
}

PrecisionScope::PrecisionScope(ComputePrecision p) : prev_(t_precision) {
  t_precision = p;
}
PrecisionScope::~PrecisionScope() {
  t_precision = prev_;
}

}  // namespace diffuse::ops
