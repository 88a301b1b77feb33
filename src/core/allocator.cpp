#include "core/allocator.h"

#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace diffuse {
namespace {

constexpr size_t kAlign = 64;
constexpr size_t kMaxCached = size_t(2) << 30;  // keep at most 2 GiB of free blocks

struct Cache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;
  size_t cached = 0;
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: blocks may be freed during exit
  return *c;
}

size_t round_up(size_t bytes) {
  if (bytes == 0) bytes = 1;
  // small blocks to 64 bytes, large ones to 4 KiB, so near sizes share a bucket
  size_t q = bytes < (size_t(1) << 20) ? kAlign : 4096;
  return (bytes + q - 1) / q * q;
}

}  // namespace

void* host_alloc(size_t bytes) {
  size_t n = round_up(bytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free_blocks.find(n);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.cached -= n;
      return p;
    }
  }
  void* p = std::aligned_alloc(kAlign, n);
  if (!p) {
    host_cache_clear();
    p = std::aligned_alloc(kAlign, n);
  }
  if (!p) throw std::bad_alloc();
  return p;
}

void host_free(void* p, size_t bytes) {
  if (!p) return;
  size_t n = round_up(bytes);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (c.cached + n > kMaxCached) {
    std::free(p);
    return;
  }
  c.free_blocks[n].push_back(p);
  c.cached += n;
}

void host_cache_clear() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& [n, v] : c.free_blocks)
    for (void* p : v) std::free(p);
  c.free_blocks.clear();
  c.cached = 0;
}

size_t host_cache_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.cached;
}

}  // namespace diffuse
