// The thread pool: every kernel splits its outer loop with parallel_for, which uses all
// cores (OpenMP's pool, shared with oneDNN so the two never oversubscribe).
#pragma once
#include <cstdint>
#include <functional>

namespace diffuse {

int num_threads();
// The most threads set_num_threads accepts: 4x the hardware threads, at most 1024 (OpenMP's
// runtime crashes or stalls creating tens of thousands).
int max_threads();
// Uses n threads from now on; 0 keeps the current count. Throws a clear Error when n is negative
// or above max_threads().
void set_num_threads(int n);

// Calls fn(begin, end) over [0, n) in contiguous chunks of at least `grain` items.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace diffuse
