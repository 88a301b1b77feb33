// Dispatch of the embedding lookup: ids are checked against the table size here.
#include "ops/cpu/kernels.h"
#include "ops/ops.h"
#include "ops/shape_util.h"

namespace diffuse::ops {

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  check_weight(weight, "embedding");
  DF_CHECK(weight.dim() == 2, "embedding: weight must be [V, D], got ", weight.desc());
  DF_CHECK(ids.defined(), "embedding: ids is undefined");
  DF_CHECK(ids.dtype() == DType::I64 || ids.dtype() == DType::I32,
           "embedding: ids must be i64 or i32, got ", ids.desc());
  const Tensor idc = ids.contiguous();
  const int64_t vocab = weight.shape()[0];
  const int64_t n = idc.numel();
  const bool i64 = idc.dtype() == DType::I64;
  const void* data = idc.raw_data();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id =
        i64 ? static_cast<const int64_t*>(data)[i] : int64_t(static_cast<const int32_t*>(data)[i]);
    DF_CHECK(id >= 0 && id < vocab, "embedding: id ", id, " at position ", i,
             " out of range for a table of ", vocab, " rows (weight ", weight.desc(), ")");
  }
  Shape out_shape = ids.shape();
  out_shape.push_back(weight.shape()[1]);  // [...ids] -> [...ids, D]
  Tensor out = Tensor::empty(out_shape);
  cpu::embedding(weight, idc, out);
  return out;
}

}  // namespace diffuse::ops
