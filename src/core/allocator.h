// Caching allocator: 64-byte aligned host blocks, reused by exact (rounded) size so that
// repeated steps of a sampler or trainer stop calling the system allocator.
//
// Large blocks (1 MiB and up) are mapped from the system directly (transparent huge pages from
// 2 MiB). When a request for a large block misses the cache, the block is built from the pages
// of the least recently freed ones (cut, and moved with mremap: no copy and no page faults);
// only what the cache lacks is new memory. So cached blocks never make the process bigger than
// its highest live total: a model whose sizes change as it runs (the VAE decoder's levels)
// reuses the memory of the sizes it no longer asks for instead of keeping it beside its own.
#pragma once
#include <cstddef>

namespace diffuse {

void* host_alloc(size_t bytes);
void host_free(void* p, size_t bytes);
// Returns cached blocks to the system.
void host_cache_clear();
size_t host_cache_bytes();

// Bytes of this allocator (rounded block sizes).
struct HostMemoryStats {
  size_t live = 0;        // handed out and not yet freed
  size_t cached = 0;      // free blocks kept for reuse
  size_t peak_live = 0;   // highest `live` since the start (the cache's budget)
  size_t peak_total = 0;  // highest live + cached since the last reset_host_peak_total()
  size_t misses = 0;      // requests served by the system since the last reset
  size_t evicted = 0;     // bytes returned to the system since the last reset
  size_t fresh = 0;       // bytes newly taken from the system (to be faulted in) since then
};
HostMemoryStats host_memory_stats();
// Starts a new measurement window for peak_total, misses, evicted and fresh.
void reset_host_peak_total();

}  // namespace diffuse
