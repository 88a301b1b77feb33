#include "core/finite.h"

#include <cmath>

namespace diffuse {

bool all_finite(const Tensor& t) {
  if (!t.defined() || !is_floating(t.dtype())) return true;
  const Tensor f = t.dtype() == DType::F32 ? t.contiguous() : t.to(DType::F32);
  const float* p = f.data<float>();
  bool ok = true;
  for (int64_t i = 0; i < f.numel(); ++i) ok &= std::isfinite(p[i]);
  return ok;
}

}  // namespace diffuse
