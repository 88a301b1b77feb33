#include "core/allocator.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <list>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace diffuse {
namespace {

constexpr size_t kAlign = 64;
constexpr size_t kPage = 4096;
constexpr size_t kLarge = size_t(1) << 20;      // from here on: mapped, pooled pages
constexpr size_t kHuge = size_t(2) << 20;       // from here on: 2 MiB aligned, huge pages
constexpr size_t kMaxCached = size_t(2) << 30;  // keep at most 2 GiB of free blocks
constexpr size_t kMaxSegs = 16;                 // mappings per large block

// A mapped block: `segs` are the lengths, in address order, of its ranges that each lie in one
// kernel mapping (a block assembled from moved pages spans several; mremap moves one at a time).
struct Block {
  uintptr_t p = 0;
  size_t n = 0;
  std::vector<size_t> segs;
};

struct Cache {
  std::mutex mu;
  // Small blocks (malloc'd): by size.
  std::unordered_map<size_t, std::vector<void*>> small;
  // Free large blocks, least recently freed first, and by size for exact lookups.
  std::list<Block> pool;
  std::unordered_map<size_t, std::vector<std::list<Block>::iterator>> by_size;
  // Large blocks handed out, by address.
  std::unordered_map<uintptr_t, Block> live_large;
  size_t cached = 0, live = 0, peak_live = 0, peak_total = 0, misses = 0, evicted = 0, fresh = 0;

  void note_alloc(size_t n) {
    live += n;
    peak_live = std::max(peak_live, live);
    peak_total = std::max(peak_total, live + cached);
  }
  void add_free(Block b, bool oldest) {
    cached += b.n;
    const size_t n = b.n;
    auto it = pool.insert(oldest ? pool.begin() : pool.end(), std::move(b));
    by_size[n].push_back(it);
  }
  Block unlink(std::list<Block>::iterator it) {
    auto& v = by_size[it->n];
    v.erase(std::find(v.begin(), v.end(), it));
    Block b = std::move(*it);
    pool.erase(it);
    cached -= b.n;
    return b;
  }
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: blocks may be freed during exit
  return *c;
}

size_t round_up(size_t bytes) {
  if (bytes == 0) bytes = 1;
  // small blocks to 64 bytes, large ones to pages, so near sizes share a bucket
  size_t q = bytes < kLarge ? kAlign : kPage;
  return (bytes + q - 1) / q * q;
}

// Fresh address space for n bytes (pages are faulted in on first touch).
uintptr_t map_block(size_t n) {
  const size_t align = n >= kHuge ? kHuge : kPage;
  const size_t span = n + align - kPage;
  void* m = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return 0;
  const uintptr_t b = reinterpret_cast<uintptr_t>(m);
  const uintptr_t p = (b + align - 1) / align * align;
  if (p > b) munmap(m, p - b);  // trim to the aligned range
  if (b + span > p + n) munmap(reinterpret_cast<void*>(p + n), b + span - (p + n));
#ifdef MADV_HUGEPAGE
  if (n >= kHuge) madvise(reinterpret_cast<void*>(p), n, MADV_HUGEPAGE);
#endif
  return p;
}

void unmap(const Block& b) {
  munmap(reinterpret_cast<void*>(b.p), b.n);
}

// Splits b after its first k bytes: b keeps the head, the tail is returned.
Block split(Block& b, size_t k) {
  Block tail;
  tail.p = b.p + k;
  tail.n = b.n - k;
  size_t at = 0, i = 0;
  while (at + b.segs[i] <= k) at += b.segs[i++];
  std::vector<size_t> head(b.segs.begin(), b.segs.begin() + ptrdiff_t(i));
  if (k > at) head.push_back(k - at);
  tail.segs.push_back(at + b.segs[i] - k);
  tail.segs.insert(tail.segs.end(), b.segs.begin() + ptrdiff_t(i) + 1, b.segs.end());
  b.n = k;
  b.segs = std::move(head);
  return tail;
}

// Builds a block of n bytes from the resident pages of `pieces` (moved, not copied: no page
// faults), the rest fresh. Returns the block and the bytes that are fresh.
Block assemble(std::vector<Block>& pieces, size_t n, size_t& fresh) {
  Block out;
  fresh = n;
  if (pieces.size() == 1 && pieces[0].n == n) {  // one cached block of a larger size, cut
    fresh = 0;
    return std::move(pieces[0]);
  }
  out.p = map_block(n);
  if (!out.p) {
    for (const Block& b : pieces) unmap(b);
    return out;
  }
  out.n = n;
  size_t at = 0;
  for (const Block& b : pieces) {
    uintptr_t from = b.p;
    for (size_t len : b.segs) {
      void* to = reinterpret_cast<void*>(out.p + at);
      if (mremap(reinterpret_cast<void*>(from), len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to) ==
          MAP_FAILED) {
        munmap(reinterpret_cast<void*>(from), len);  // `to` stays fresh address space
      } else {
        fresh -= len;
      }
      out.segs.push_back(len);
      from += len;
      at += len;
    }
  }
  if (at < n) out.segs.push_back(n - at);
  return out;
}

void* large_alloc(Cache& c, size_t n) {
  std::vector<Block> pieces, drop;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto hit = c.by_size.find(n);
    if (hit != c.by_size.end() && !hit->second.empty()) {
      Block b = c.unlink(hit->second.back());  // the most recently freed of this size
      const uintptr_t p = b.p;
      c.live_large.emplace(p, std::move(b));
      c.note_alloc(n);
      return reinterpret_cast<void*>(p);
    }
    ++c.misses;
    // A miss: the pages of the least recently freed blocks are reused (cut and moved), so
    // that the process only grows when live bytes pass their highest mark so far. A block is
    // made of at most kMaxSegs mappings and cut-off tails under kLarge are handed back, which
    // bounds the process's count of mappings; pages that would pass that are handed back, and
    // their share of the block is faulted in afresh.
    size_t need = n, segs = 0;
    bool full = false;
    while (need > 0 && !c.pool.empty()) {
      Block b = c.unlink(c.pool.begin());
      if (b.n > need) {
        Block tail = split(b, need);
        if (tail.n >= kLarge) {
          c.add_free(std::move(tail), true);
        } else {
          c.evicted += tail.n;
          drop.push_back(std::move(tail));
        }
      }
      need -= b.n;
      full = full || segs + b.segs.size() >= kMaxSegs;  // leave one for a fresh tail
      if (full) {
        c.evicted += b.n;
        drop.push_back(std::move(b));
      } else {
        segs += b.segs.size();
        pieces.push_back(std::move(b));
      }
    }
  }
  for (const Block& d : drop) unmap(d);
  size_t fresh = 0;
  Block b = assemble(pieces, n, fresh);
  if (!b.p) {
    host_cache_clear();
    b.p = map_block(n);
    b.n = n;
    b.segs = {n};
    fresh = n;
  }
  if (!b.p) throw std::bad_alloc();
  const uintptr_t p = b.p;
  std::lock_guard<std::mutex> lock(c.mu);
  c.live_large.emplace(p, std::move(b));
  c.fresh += fresh;
  c.note_alloc(n);
  return reinterpret_cast<void*>(p);
}

}  // namespace

void* host_alloc(size_t bytes) {
  const size_t n = round_up(bytes);
  Cache& c = cache();
  if (n >= kLarge) return large_alloc(c, n);
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.small.find(n);
    if (it != c.small.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.cached -= n;
      c.note_alloc(n);
      return p;
    }
    ++c.misses;
  }
  void* p = std::aligned_alloc(kAlign, n);
  if (!p) {
    host_cache_clear();
    p = std::aligned_alloc(kAlign, n);
  }
  if (!p) throw std::bad_alloc();
  std::lock_guard<std::mutex> lock(c.mu);
  c.fresh += n;
  c.note_alloc(n);
  return p;
}

void host_free(void* p, size_t bytes) {
  if (!p) return;
  const size_t n = round_up(bytes);
  Cache& c = cache();
  Block drop;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.live -= n;
    if (n < kLarge) {
      if (c.cached + n <= kMaxCached) {
        c.cached += n;
        c.small[n].push_back(p);
        return;
      }
    } else {
      auto it = c.live_large.find(reinterpret_cast<uintptr_t>(p));
      Block b{reinterpret_cast<uintptr_t>(p), n, {n}};
      if (it != c.live_large.end()) {
        b = std::move(it->second);
        c.live_large.erase(it);
      }
      if (c.cached + n <= kMaxCached) {
        c.add_free(std::move(b), false);
        return;
      }
      c.evicted += n;
      drop = std::move(b);
    }
  }
  if (n < kLarge)
    std::free(p);
  else
    unmap(drop);
}

void host_cache_clear() {
  Cache& c = cache();
  std::vector<std::pair<void*, size_t>> small;
  std::list<Block> pool;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    for (auto& [n, v] : c.small)
      for (void* p : v) small.push_back({p, n});
    c.small.clear();
    pool.swap(c.pool);
    c.by_size.clear();
    c.evicted += c.cached;
    c.cached = 0;
  }
  for (auto& [p, n] : small) std::free(p);
  for (const Block& b : pool) unmap(b);
}

size_t host_cache_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.cached;
}

HostMemoryStats host_memory_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return {c.live, c.cached, c.peak_live, c.peak_total, c.misses, c.evicted, c.fresh};
}

void reset_host_peak_total() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.peak_total = c.live + c.cached;
  c.misses = 0;
  c.evicted = 0;
  c.fresh = 0;
}

}  // namespace diffuse
