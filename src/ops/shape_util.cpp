#include "ops/shape_util.h"

#include <algorithm>

namespace diffuse::ops {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    DF_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
             " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

void check_f32(const Tensor& t, const char* op, const char* arg) {
  DF_CHECK(t.defined(), op, ": ", arg, " is undefined");
  DF_CHECK(t.dtype() == DType::F32, op, ": ", arg, " must be f32, got ", t.desc());
}

void check_weight(const Tensor& t, const char* op) {
  DF_CHECK(t.defined(), op, ": weight is undefined");
  DF_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16, op,
           ": weight must be f32, f16 or bf16, got ", t.desc());
}

Tensor as_f32(const Tensor& t, const char* op, const char* arg) {
  DF_CHECK(t.defined(), op, ": ", arg, " is undefined");
  if (t.dtype() == DType::F16 || t.dtype() == DType::BF16) return t.to(DType::F32);
  check_f32(t, op, arg);
  return t;
}

}  // namespace diffuse::ops
