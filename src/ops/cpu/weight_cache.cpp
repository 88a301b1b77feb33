#include "ops/cpu/weight_cache.h"

#include <sys/mman.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "ops/cpu/kernels.h"
#include "ops/ops.h"
#include "ops/profile.h"

namespace diffuse::ops::cpu {

namespace {

struct Entry {
  std::weak_ptr<Storage> owner;
  dnnl::memory::desc md;
  DnnlBuffer packed;
};

struct Cache {
  std::mutex mu;
  std::map<std::vector<int64_t>, Entry> entries;
  size_t bytes = 0;
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: tensors may be freed during exit
  return *c;
}

std::vector<int64_t> key_of(const Tensor& w) {
  std::vector<int64_t> k{int64_t(reinterpret_cast<uintptr_t>(w.raw_data())), int64_t(w.dtype())};
  k.insert(k.end(), w.shape().begin(), w.shape().end());
  k.insert(k.end(), w.strides().begin(), w.strides().end());
  return k;
}

// The temporary f32 copy of an f16 weight comes from malloc, not the caching allocator, so
// that its memory goes back to the system (each weight has its own size: cached blocks would
// never be reused).
DnnlBuffer pack(const Tensor& w, const dnnl::memory::desc& plain, const dnnl::memory::desc& md) {
  ProfileScope prof("pack_weights");
  const Tensor wc = w.contiguous();
  std::vector<float> w32;
  dnnl::memory::desc from = plain;
  const void* src = wc.raw_data();
  if (wc.dtype() == DType::F16) {
    w32.resize(size_t(wc.numel()));
    half_to_f32(DType::F16, static_cast<const uint16_t*>(src), w32.data(), wc.numel());
    src = w32.data();
  } else if (wc.dtype() == DType::BF16) {
    from.data.data_type = dnnl_bf16;  // same dims and strides, read as bf16
  }
  DnnlBuffer out = dnnl_buffer(md);
  dnnl::reorder::primitive_desc pd(dnnl_engine(), from, dnnl_engine(), md, dnnl_attr());
  dnnl_execute(dnnl::reorder(pd), pd.scratchpad_desc(),
               {{DNNL_ARG_FROM, dnnl_wrap(from, src)}, {DNNL_ARG_TO, out.mem}});
  release_pages(w);  // a memory-mapped source is not read again
  return out;
}

}  // namespace

dnnl::memory packed_weights(const Tensor& w, const dnnl::memory::desc& plain,
                            const dnnl::memory::desc& md, DnnlBuffer& hold) {
  Cache& c = cache();
  const std::vector<int64_t> key = key_of(w);
  Entry found;
  bool have = false;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.entries.find(key);
    if (it != c.entries.end() && it->second.owner.lock() == w.storage()) {
      found = it->second;
      have = true;
    }
  }
  if (!have) {
    Entry e;
    e.owner = w.storage();
    e.md = md;
    e.packed = pack(w, plain, md);
    std::lock_guard<std::mutex> lock(c.mu);
    for (auto it = c.entries.begin(); it != c.entries.end();) {  // drop freed weights
      if (it->second.owner.expired() || it->first == key) {
        c.bytes -= it->second.md.get_size();
        it = c.entries.erase(it);
      } else {
        ++it;
      }
    }
    c.entries[key] = e;
    c.bytes += md.get_size();
    found = e;
  }
  if (found.md == md) return found.packed.mem;
  // Another primitive wants another layout: reorder from the packed copy (no second cache).
  hold = dnnl_buffer(md);
  dnnl::reorder::primitive_desc pd(dnnl_engine(), found.md, dnnl_engine(), md, dnnl_attr());
  dnnl_execute(dnnl::reorder(pd), pd.scratchpad_desc(),
               {{DNNL_ARG_FROM, found.packed.mem}, {DNNL_ARG_TO, hold.mem}});
  return hold.mem;
}

size_t packed_weights_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.bytes;
}

void clear_packed_weights() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.entries.clear();
  c.bytes = 0;
}

}  // namespace diffuse::ops::cpu

namespace diffuse::ops {

void clear_weight_cache() {
  cpu::clear_packed_weights();
}

namespace {

// True when [b, e) lies in one mapping of a file (its inode in /proc/self/maps is not 0):
// only such pages are released, so that heap memory (e.g. a training step's bf16 copy of its
// weights) is never pushed to swap.
bool file_backed(uintptr_t b, uintptr_t e) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream is(line);
    std::string range, perms, offset, dev;
    uint64_t inode = 0;
    if (!(is >> range >> perms >> offset >> dev >> inode)) continue;
    const size_t dash = range.find('-');
    if (dash == std::string::npos) continue;
    const uintptr_t lo = std::stoull(range.substr(0, dash), nullptr, 16);
    const uintptr_t hi = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (b >= lo && b < hi) return inode != 0 && e <= hi;
  }
  return false;
}

}  // namespace

void release_pages(const Tensor& t) {
#ifdef MADV_PAGEOUT
  if (!t.defined() || !t.is_contiguous()) return;
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t p = uintptr_t(t.raw_data());
  const uintptr_t b = (p + page - 1) / page * page;
  const uintptr_t e = (p + t.nbytes()) / page * page;
  if (e > b && file_backed(b, e)) madvise(reinterpret_cast<void*>(b), e - b, MADV_PAGEOUT);
#else
  (void)t;
#endif
}

}  // namespace diffuse::ops
