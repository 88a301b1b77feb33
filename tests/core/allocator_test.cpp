// The caching allocator's policy: exact-size reuse, large blocks rebuilt from the pages of
// freed ones (so the process does not grow past its highest live total), data kept intact.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/allocator.h"

namespace diffuse {
namespace {

constexpr size_t kMiB = size_t(1) << 20;

// Resident anonymous memory of this process in bytes.
size_t rss_anon() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("RssAnon:", 0) == 0) return size_t(std::stoull(line.substr(8))) * 1024;
  return 0;
}

size_t mappings() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  size_t n = 0;
  while (std::getline(maps, line)) ++n;
  return n;
}

void touch(void* p, size_t n, uint8_t v) {
  std::memset(p, v, n);
}

TEST(Allocator, ReusesLargeBlocksOfTheSameSize) {
  host_cache_clear();
  void* a = host_alloc(3 * kMiB);
  touch(a, 3 * kMiB, 1);
  host_free(a, 3 * kMiB);
  EXPECT_EQ(host_cache_bytes(), 3 * kMiB);
  reset_host_peak_total();
  void* b = host_alloc(3 * kMiB);
  EXPECT_EQ(a, b);
  EXPECT_EQ(host_memory_stats().misses, 0u);
  host_free(b, 3 * kMiB);
  host_cache_clear();
  EXPECT_EQ(host_cache_bytes(), 0u);
}

TEST(Allocator, LiveAndPeakBytes) {
  host_cache_clear();
  const HostMemoryStats s0 = host_memory_stats();
  void* a = host_alloc(5 * kMiB + 1);  // rounded up to pages
  const HostMemoryStats s1 = host_memory_stats();
  EXPECT_EQ(s1.live - s0.live, 5 * kMiB + 4096);
  EXPECT_GE(s1.peak_live, s1.live);
  host_free(a, 5 * kMiB + 1);
  EXPECT_EQ(host_memory_stats().live, s0.live);
  host_cache_clear();
}

// A new size is built from the freed blocks' pages: no fresh memory while the pool holds
// enough, and the total (live + cached) never passes the highest live total.
TEST(Allocator, NewSizesReuseFreedPagesWithoutGrowing) {
  host_cache_clear();
  std::vector<void*> blocks;
  for (int i = 0; i < 4; ++i) {
    blocks.push_back(host_alloc(8 * kMiB));
    touch(blocks.back(), 8 * kMiB, 2);
  }
  for (void* p : blocks) host_free(p, 8 * kMiB);
  reset_host_peak_total();
  const size_t rss0 = rss_anon();
  // 20 MiB: two whole 8 MiB blocks and half of a third; then 6 MiB and 5 MiB from the rest.
  void* x = host_alloc(20 * kMiB);
  void* y = host_alloc(6 * kMiB);
  void* z = host_alloc(5 * kMiB);
  touch(x, 20 * kMiB, 3);
  touch(y, 6 * kMiB, 4);
  touch(z, 5 * kMiB, 5);
  const HostMemoryStats s = host_memory_stats();
  EXPECT_EQ(s.misses, 3u);
  EXPECT_EQ(s.fresh, 0u) << "the pool held 32 MiB, 31 MiB were asked for";
  EXPECT_LE(s.peak_total, s.peak_live);
  EXPECT_LT(rss_anon(), rss0 + 2 * kMiB) << "the pages were moved, not newly faulted in";
  // The data written last is intact in each block (moved pages are the blocks' own now).
  EXPECT_EQ(static_cast<uint8_t*>(x)[20 * kMiB - 1], 3);
  EXPECT_EQ(static_cast<uint8_t*>(y)[0], 4);
  EXPECT_EQ(static_cast<uint8_t*>(z)[5 * kMiB - 1], 5);
  host_free(x, 20 * kMiB);
  host_free(y, 6 * kMiB);
  host_free(z, 5 * kMiB);
  host_cache_clear();
}

// Past the pool, only the difference is fresh; the total grows exactly to the new live total.
TEST(Allocator, GrowsOnlyByWhatThePoolLacks) {
  host_cache_clear();
  void* a = host_alloc(4 * kMiB);
  touch(a, 4 * kMiB, 1);
  host_free(a, 4 * kMiB);
  reset_host_peak_total();
  void* b = host_alloc(10 * kMiB);
  touch(b, 10 * kMiB, 1);
  const HostMemoryStats s = host_memory_stats();
  EXPECT_EQ(s.fresh, 6 * kMiB);
  EXPECT_EQ(s.cached, 0u);
  host_free(b, 10 * kMiB);
  host_cache_clear();
}

// A long run of random sizes (a stand-in for a sampler's steps): the contents of every live
// block survive the moves, the total stays within the highest live total, and the count of
// mappings stays bounded.
TEST(Allocator, RandomSizesKeepDataAndBoundedMappings) {
  host_cache_clear();
  std::mt19937 rng(7);
  std::uniform_int_distribution<size_t> size_mib(1, 24), pick(0, 15);
  struct Live {
    uint8_t* p = nullptr;
    size_t n = 0;
    uint8_t v = 0;
  };
  std::vector<Live> live(16);
  const size_t maps0 = mappings();
  reset_host_peak_total();
  for (int step = 0; step < 3000; ++step) {
    Live& l = live[pick(rng)];
    if (l.p) {
      ASSERT_EQ(l.p[0], l.v);
      ASSERT_EQ(l.p[l.n / 2], l.v);
      ASSERT_EQ(l.p[l.n - 1], l.v);
      host_free(l.p, l.n);
      l.p = nullptr;
    } else {
      l.n = size_mib(rng) * kMiB + 4096 * pick(rng);
      l.p = static_cast<uint8_t*>(host_alloc(l.n));
      l.v = uint8_t(step);
      l.p[0] = l.p[l.n / 2] = l.p[l.n - 1] = l.v;
    }
  }
  const HostMemoryStats s = host_memory_stats();
  EXPECT_LE(s.peak_total, s.peak_live + 0) << "cached blocks never add to the highest total";
  // Each large block spans at most 16 mappings, and cached blocks are at least 1 MiB each.
  const size_t blocks = live.size() + s.cached / kMiB;
  EXPECT_LE(mappings(), maps0 + 16 * blocks) << "the count of mappings must stay bounded";
  for (Live& l : live)
    if (l.p) host_free(l.p, l.n);
  host_cache_clear();
}

}  // namespace
}  // namespace diffuse
