// The thread pool: every kernel splits its outer loop with parallel_for, which uses all
// cores (OpenMP's pool, shared with oneDNN so the two never oversubscribe).
#pragma once
#include <cstdint>
#include <functional>

namespace diffuse {

int num_threads();
void set_num_threads(int n);

// Calls fn(begin, end) over [0, n) in contiguous chunks of at least `grain` items.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace diffuse
