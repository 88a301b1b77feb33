// Concatenation along one dim: for every index of the dims before it, each input contributes
// one contiguous chunk of bytes to the output row.
#include <cstring>

#include "core/parallel.h"
#include "ops/cpu/kernels.h"

namespace diffuse::ops::cpu {

void cat(const std::vector<Tensor>& xs, int64_t dim, Tensor& out) {
  const size_t es = dtype_size(out.dtype());
  int64_t outer = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= out.shape()[size_t(d)];
  const int64_t out_row = outer == 0 ? 0 : out.numel() / outer;  // elements per outer index
  std::vector<int64_t> chunk(xs.size()), start(xs.size());
  int64_t acc = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    chunk[i] = outer == 0 ? 0 : xs[i].numel() / outer;
    start[i] = acc;
    acc += chunk[i];
  }
  char* op = static_cast<char*>(out.raw_data());
  parallel_for(outer, std::max<int64_t>(1, 16384 / std::max<int64_t>(out_row, 1)),
               [&](int64_t o0, int64_t o1) {
                 for (int64_t o = o0; o < o1; ++o)
                   for (size_t i = 0; i < xs.size(); ++i) {
                     if (chunk[i] == 0) continue;
                     const char* src = static_cast<const char*>(xs[i].raw_data());
                     std::memcpy(op + size_t(o * out_row + start[i]) * es,
                                 src + size_t(o * chunk[i]) * es, size_t(chunk[i]) * es);
                   }
               });
}

}  // namespace diffuse::ops::cpu
