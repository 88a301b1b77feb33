// oneDNN plumbing shared by the kernels that use it: the CPU engine, a stream per thread,
// a thread-safe cache of primitives keyed by shapes, and per-call scratchpads (primitives are
// created in user-scratchpad mode so one cached primitive may run on several threads at once).
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"

namespace diffuse::ops::cpu {

dnnl::engine& dnnl_engine();
dnnl::stream& dnnl_stream();  // one per calling thread

using DnnlKey = std::vector<int64_t>;

struct DnnlKeyHash {
  size_t operator()(const DnnlKey& k) const {
    uint64_t h = 1469598103934665603ull;
    for (int64_t v : k) h = (h ^ uint64_t(v)) * 1099511628211ull;
    return size_t(h);
  }
};

// Maps a shape key to a cached value (primitive and descriptors). Values are small handles
// (oneDNN objects are reference counted), returned by copy. Creation happens outside the lock;
// if two threads race, the first value stored wins.
template <typename V>
class PrimitiveCache {
 public:
  V get(const DnnlKey& key, const std::function<V()>& make) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = map_.find(key);
      if (it != map_.end()) return it->second;
    }
    V v = make();
    std::lock_guard<std::mutex> lock(mu_);
    if (map_.size() >= kMaxEntries) map_.clear();
    return map_.emplace(key, std::move(v)).first->second;
  }

 private:
  static constexpr size_t kMaxEntries = 4096;
  std::mutex mu_;
  std::unordered_map<DnnlKey, V, DnnlKeyHash> map_;
};

// Attributes for every cached primitive: user-managed scratchpad.
dnnl::primitive_attr dnnl_attr();

// A temporary buffer (from the caching allocator) wrapped as oneDNN memory of `md`.
struct DnnlBuffer {
  Tensor storage;
  dnnl::memory mem;
};
DnnlBuffer dnnl_buffer(const dnnl::memory::desc& md);

// Wraps caller memory (not owned) as oneDNN memory.
dnnl::memory dnnl_wrap(const dnnl::memory::desc& md, const void* data);

// Executes `prim` on this thread's stream with `args` plus a fresh scratchpad of the size
// `scratch_md` asks for, then waits.
void dnnl_execute(const dnnl::primitive& prim, const dnnl::memory::desc& scratch_md,
                  std::unordered_map<int, dnnl::memory> args);

// dims/strides of a tensor as oneDNN dims; strides of size-1 dims are normalized to the dense
// value (they are never used to address memory, and odd values can steer oneDNN off its fast
// kernels).
dnnl::memory::desc dnnl_desc(const Shape& shape, const Shape& strides);

}  // namespace diffuse::ops::cpu
