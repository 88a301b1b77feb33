#include "core/parallel.h"

#include <omp.h>

#include <algorithm>
#include <thread>

#include "core/error.h"

namespace diffuse {

int num_threads() { return omp_get_max_threads(); }
int max_threads() {
  const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
  return std::min(1024, 4 * std::max(hw, omp_get_num_procs()));
}
void set_num_threads(int n) {
  DF_CHECK(n >= 0 && n <= max_threads(), "thread count ", n, " is out of range: give 1 to ",
           max_threads(), " (4x the hardware threads, 1024 at most)");
  if (n > 0) omp_set_num_threads(n);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t max_chunks = (n + grain - 1) / grain;
  int threads = int(std::min<int64_t>(num_threads(), max_chunks));
  if (threads <= 1 || omp_in_parallel()) {
    fn(0, n);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num();
    int nt = omp_get_num_threads();
    int64_t chunk = (n + nt - 1) / nt;
    int64_t b = int64_t(t) * chunk;
    int64_t e = std::min(n, b + chunk);
    if (b < e) fn(b, e);
  }
}

}  // namespace diffuse
