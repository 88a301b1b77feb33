// Helpers for the weight-file tests: raw file bytes, a stored-zip writer (libzip), a tiny
// pickle writer that emits the opcodes torch.save uses, and a GGUF writer.
#pragma once
#include <sys/resource.h>
#include <zip.h>

#include <gtest/gtest.h>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/weights.h"

namespace diffuse::test {

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

// Every entry of a zip archive, by name.
inline std::vector<std::pair<std::string, std::string>> read_zip(const std::string& path) {
  int err = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_RDONLY, &err);
  if (!z) throw std::runtime_error("cannot open zip " + path);
  std::vector<std::pair<std::string, std::string>> out;
  zip_int64_t n = zip_get_num_entries(z, 0);
  for (zip_int64_t i = 0; i < n; ++i) {
    zip_stat_t st;
    zip_stat_index(z, zip_uint64_t(i), 0, &st);
    std::string data(st.size, '\0');
    zip_file_t* f = zip_fopen_index(z, zip_uint64_t(i), 0);
    zip_fread(f, data.data(), st.size);
    zip_fclose(f);
    out.emplace_back(st.name, std::move(data));
  }
  zip_discard(z);
  return out;
}

// Writes the entries, uncompressed (as torch.save does).
inline void write_zip(const std::string& path,
                      const std::vector<std::pair<std::string, std::string>>& entries) {
  int err = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  if (!z) throw std::runtime_error("cannot create zip " + path);
  for (auto& [name, data] : entries) {
    zip_source_t* s = zip_source_buffer(z, data.data(), data.size(), 0);
    zip_int64_t idx = zip_file_add(z, name.c_str(), s, ZIP_FL_OVERWRITE);
    if (idx < 0) throw std::runtime_error("zip_file_add failed");
    zip_set_file_compression(z, zip_uint64_t(idx), ZIP_CM_STORE, 0);
  }
  if (zip_close(z) != 0) throw std::runtime_error("zip_close failed");
}

// Emits pickle opcodes (protocol 2, as torch.save writes them).
class PickleWriter {
 public:
  PickleWriter() { op(0x80), byte(2); }
  PickleWriter& op(int c) { return byte(c); }
  PickleWriter& mark() { return op('('); }
  PickleWriter& str(const std::string& s) {
    op('X');
    le(s.size(), 4);
    b_ += s;
    return *this;
  }
  PickleWriter& integer(int64_t v) {
    if (v >= 0 && v < 256) return op('K').byte(int(v));
    if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      return le(uint64_t(uint32_t(int32_t(v))), 4);
    }
    op(0x8a).byte(8);
    return le(uint64_t(v), 8);
  }
  PickleWriter& global(const std::string& module, const std::string& name) {
    op('c');
    b_ += module + "\n" + name + "\n";
    return *this;
  }
  PickleWriter& int_tuple(const std::vector<int64_t>& v) {
    mark();
    for (int64_t x : v) integer(x);
    return op('t');
  }
  // _rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())
  PickleWriter& tensor(const std::string& storage_type, const std::string& key, int64_t numel,
                       int64_t offset, const std::vector<int64_t>& size,
                       const std::vector<int64_t>& stride) {
    global("torch._utils", "_rebuild_tensor_v2").mark();
    mark().str("storage").global("torch", storage_type).str(key).str("cpu").integer(numel);
    op('t').op('Q');
    integer(offset).int_tuple(size).int_tuple(stride).op(0x89);
    global("collections", "OrderedDict").op(')').op('R');
    return op('t').op('R');
  }
  PickleWriter& raw(const std::string& bytes) {
    b_ += bytes;
    return *this;
  }
  std::string finish() { return b_ + "."; }
  PickleWriter& byte(int c) {
    b_.push_back(char(uint8_t(c)));
    return *this;
  }
  PickleWriter& le(uint64_t v, int n) {
    for (int k = 0; k < n; ++k) b_.push_back(char(uint8_t(v >> (8 * k))));
    return *this;
  }

 private:
  std::string b_;
};

// A GGUF v3 file: metadata of strings or u32s, then tensors given as raw GGML data.
class GgufWriter {
 public:
  struct T {
    std::string name;
    std::vector<uint64_t> ne;  // innermost first, as GGUF stores them
    uint32_t type;
    std::string data;
  };
  void kv_string(const std::string& k, const std::string& v) { kvs_.push_back({k, 8, v, 0}); }
  void kv_u32(const std::string& k, uint32_t v) { kvs_.push_back({k, 4, "", v}); }
  void tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
              const std::string& data) {
    ts_.push_back({name, std::move(ne), type, data});
  }
  uint32_t version = 3;
  uint64_t alignment = 32;

  std::string bytes() const {
    std::string b = "GGUF";
    le(b, version, 4);
    le(b, ts_.size(), 8);
    le(b, kvs_.size(), 8);
    for (auto& kv : kvs_) {
      str(b, kv.key);
      le(b, kv.type, 4);
      if (kv.type == 8)
        str(b, kv.s);
      else
        le(b, kv.u, 4);
    }
    std::vector<uint64_t> offsets;
    uint64_t off = 0;
    for (auto& t : ts_) {
      offsets.push_back(off);
      off += (t.data.size() + alignment - 1) / alignment * alignment;
    }
    for (size_t i = 0; i < ts_.size(); ++i) {
      str(b, ts_[i].name);
      le(b, ts_[i].ne.size(), 4);
      for (uint64_t d : ts_[i].ne) le(b, d, 8);
      le(b, ts_[i].type, 4);
      le(b, offsets[i], 8);
    }
    while (b.size() % alignment) b.push_back('\0');
    for (auto& t : ts_) {
      b += t.data;
      while (b.size() % alignment) b.push_back('\0');
    }
    return b;
  }

 private:
  struct KV {
    std::string key;
    uint32_t type;
    std::string s;
    uint32_t u;
  };
  static void le(std::string& b, uint64_t v, int n) {
    for (int k = 0; k < n; ++k) b.push_back(char(uint8_t(v >> (8 * k))));
  }
  static void str(std::string& b, const std::string& s) {
    le(b, s.size(), 8);
    b += s;
  }
  std::vector<KV> kvs_;
  std::vector<T> ts_;
};

// Runs fn; returns "" when it succeeded, else the diffuse::Error message. Any other exception
// fails the calling test through the rethrow.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const diffuse::Error& e) {
    return e.what();
  }
  return "";
}

// Caps the process's address space for a scope, so that an allocation a corrupt header claims
// fails loudly (std::bad_alloc, which the corrupt tests report) instead of being attempted.
// Not under sanitizers, which reserve huge shadow mappings.
class AddressSpaceCap {
 public:
  explicit AddressSpaceCap(uint64_t bytes) {
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    if (getrlimit(RLIMIT_AS, &old_) == 0) {
      rlimit r = old_;
      if (r.rlim_cur == RLIM_INFINITY || r.rlim_cur > bytes) r.rlim_cur = bytes;
      active_ = setrlimit(RLIMIT_AS, &r) == 0;
    }
#endif
  }
  ~AddressSpaceCap() {
    if (active_) setrlimit(RLIMIT_AS, &old_);
  }

 private:
  rlimit old_{};
  bool active_ = false;
};

// Loading a damaged file must end in diffuse::Error or (when the damage lands in tensor data
// or a field the format ignores) in a successful load; any other exception is a failure.
// Returns 1 for an Error, 0 for a load.
template <typename Fn>
int error_or_load(Fn&& fn, const std::string& what) {
  try {
    fn();
    return 0;
  } catch (const diffuse::Error& e) {
    if (std::string(e.what()).empty()) ADD_FAILURE() << what << ": an empty error message";
    return 1;
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": " << typeid(e).name() << ": " << e.what();
    return 1;
  }
}

// Writes `bytes` with one bit of byte `pos` flipped, in place (the file is already a copy).
inline void flip_bit(const std::string& path, size_t pos, int bit) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(std::streamoff(pos));
  char c = 0;
  f.read(&c, 1);
  c = char(c ^ (1 << bit));
  f.seekp(std::streamoff(pos));
  f.write(&c, 1);
}

// Flips the bits (byte, bit) of the file at `path`, loads it as error_or_load does, and flips
// them back. Returns 1 for an Error, 0 for a load.
inline int load_with_flips(const std::string& path,
                           const std::vector<std::pair<size_t, int>>& flips,
                           const std::string& what) {
  for (auto [p, b] : flips) flip_bit(path, p, b);
  const int e = error_or_load([&] { diffuse::io::load_weights(path); }, what);
  for (auto r = flips.rbegin(); r != flips.rend(); ++r) flip_bit(path, r->first, r->second);
  return e;
}

inline void put_le(std::string& b, size_t pos, uint64_t v, int n) {
  for (int k = 0; k < n; ++k) b[pos + size_t(k)] = char(uint8_t(v >> (8 * k)));
}

}  // namespace diffuse::test
