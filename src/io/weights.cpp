#include "io/weights.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>

#include "io/safetensors.h"
#include "io/torch_pickle.h"

namespace diffuse::io {
namespace {

// The first bytes of a file (fewer when it is shorter), and its size.
std::string read_head(const std::string& path, size_t n, uint64_t* size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO: no waiting
  DF_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    DF_FAIL(path, ": not a regular file");
  }
  std::string head(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, head.data() + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += size_t(r);
  }
  ::close(fd);
  head.resize(got);
  if (size) *size = uint64_t(st.st_size);
  return head;
}

WeightFormat format_of(const std::string& head) {
  if (head.size() >= 4 && head.compare(0, 4, "GGUF") == 0) return WeightFormat::Gguf;
  if (head.size() >= 4 &&
      (head.compare(0, 4, "PK\x03\x04") == 0 || head.compare(0, 4, "PK\x05\x06") == 0))
    return WeightFormat::TorchZip;
  // safetensors: u64 header length, then the JSON header, which starts with '{'
  if (head.size() >= 9 && head[8] == '{') return WeightFormat::Safetensors;
  return WeightFormat::Unknown;
}

// ---- zip access (libzip) ----

struct ZipCloser {
  void operator()(zip_t* z) const { zip_discard(z); }  // opened read-only: nothing to write
};
struct ZipFileCloser {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};
using ZipPtr = std::unique_ptr<zip_t, ZipCloser>;
using ZipFilePtr = std::unique_ptr<zip_file_t, ZipFileCloser>;

class ZipReader {
 public:
  explicit ZipReader(const std::string& path) : path_(path) {
    read_head(path, 0, &file_size_);
    int code = 0;
    zip_t* z = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
    if (!z) {
      zip_error_t err;
      zip_error_init_with_code(&err, code);
      std::string msg = zip_error_strerror(&err);
      zip_error_fini(&err);
      DF_FAIL(path, ": not a readable zip archive (", msg, "); truncated or corrupt checkpoint?");
    }
    zip_.reset(z);
    check_total_size();
  }

  int64_t find(const std::string& name) const {
    return zip_name_locate(zip_.get(), name.c_str(), ZIP_FL_ENC_RAW);
  }

  // The torch archive's folder prefix ("name/"), from its data.pkl entry.
  std::string pickle_prefix() const {
    zip_int64_t n = zip_get_num_entries(zip_.get(), 0);
    std::string best;
    bool found = false;
    for (zip_int64_t i = 0; i < n; ++i) {
      const char* nm = zip_get_name(zip_.get(), zip_uint64_t(i), ZIP_FL_ENC_RAW);
      if (!nm) continue;
      std::string s(nm);
      const std::string tail = "data.pkl";
      if (s.size() < tail.size() || s.compare(s.size() - tail.size(), tail.size(), tail) != 0)
        continue;
      std::string prefix = s.substr(0, s.size() - tail.size());
      if (!prefix.empty() && prefix.back() != '/') continue;
      if (!found || prefix.size() < best.size()) best = prefix;
      found = true;
    }
    DF_CHECK(found, path_, ": a zip archive without data.pkl: not a PyTorch checkpoint");
    return best;
  }

  // The most bytes the archive's entries may hold in all, decompressed: torch.save stores them
  // uncompressed, so the entries' total is about the file's size.
  uint64_t total_cap() const { return file_size_ * 16 + (uint64_t(1) << 20); }

  // Refuses an archive whose entries claim more than total_cap() bytes in all (a zip bomb of
  // many entries, each below the per-entry cap), before anything is decompressed.
  void check_total_size() const {
    const zip_int64_t n = zip_get_num_entries(zip_.get(), 0);
    uint64_t total = 0;
    for (zip_int64_t i = 0; i < n; ++i) {
      zip_stat_t st;
      zip_stat_init(&st);
      if (zip_stat_index(zip_.get(), zip_uint64_t(i), 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
        continue;  // entry_size() reports it if it is read
      total += std::min<uint64_t>(st.size, total_cap() + 1);
      DF_CHECK(total <= total_cap(), path_, ": corrupt checkpoint: its ", n,
               " zip entries claim more than ", total_cap(), " bytes in all, decompressed, in a ",
               "file of ", file_size_, " (a zip bomb?)");
    }
  }

  // Size of an entry, capped against the archive's own size (a stored entry cannot be larger
  // than the file; a compressed one at most ~1000x its compressed size).
  uint64_t entry_size(int64_t index, const std::string& name) const {
    zip_stat_t st;
    zip_stat_init(&st);
    DF_CHECK(zip_stat_index(zip_.get(), zip_uint64_t(index), 0, &st) == 0, path_,
             ": cannot read zip entry ", name, ": ", zip_strerror(zip_.get()));
    DF_CHECK((st.valid & ZIP_STAT_SIZE) && (st.valid & ZIP_STAT_COMP_SIZE), path_, ": zip entry ",
             name, " has no size");
    uint64_t cap = file_size_;
    if (!(st.valid & ZIP_STAT_COMP_METHOD) || st.comp_method != ZIP_CM_STORE)
      cap = std::min<uint64_t>(file_size_ * 16 + (uint64_t(1) << 20), st.comp_size * 1100 + 4096);
    DF_CHECK(st.size <= cap, path_, ": corrupt checkpoint: zip entry ", name, " claims ", st.size,
             " bytes in a file of ", file_size_);
    return st.size;
  }

  // Reads the whole entry into dst (exactly `size` bytes), checking its CRC.
  void read(int64_t index, const std::string& name, void* dst, uint64_t size) const {
    ZipFilePtr f(zip_fopen_index(zip_.get(), zip_uint64_t(index), 0));
    DF_CHECK(f, path_, ": cannot open zip entry ", name, ": ", zip_strerror(zip_.get()));
    uint64_t got = 0;
    char* p = static_cast<char*>(dst);
    while (got < size) {
      zip_int64_t r = zip_fread(f.get(), p + got, std::min<uint64_t>(size - got, 1 << 26));
      DF_CHECK(r >= 0, path_, ": corrupt checkpoint: reading ", name, ": ",
               zip_error_strerror(zip_file_get_error(f.get())));
      DF_CHECK(r > 0, path_, ": corrupt checkpoint: ", name, " ends after ", got, " of ", size,
               " bytes");
      got += uint64_t(r);
    }
    char extra;
    zip_int64_t r = zip_fread(f.get(), &extra, 1);  // reaching the end verifies the CRC
    DF_CHECK(r == 0, path_, ": corrupt checkpoint: reading ", name, ": ",
             r < 0 ? zip_error_strerror(zip_file_get_error(f.get())) : "longer than its size");
  }

  uint64_t file_size() const { return file_size_; }

 private:
  std::string path_;
  uint64_t file_size_ = 0;
  ZipPtr zip_;
};

bool is_contiguous_view(const Shape& shape, const Shape& strides) {
  int64_t expected = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] != 1 && strides[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

// Copies one storage element into a tensor element, converting F64 -> F32 and I16 -> I32.
inline void convert_element(const uint8_t* src, uint8_t* dst, TorchStorageType t, size_t esz) {
  if (t == TorchStorageType::F64) {
    double v;
    std::memcpy(&v, src, 8);
    float f = float(v);
    std::memcpy(dst, &f, 4);
  } else if (t == TorchStorageType::I16) {
    int16_t v;
    std::memcpy(&v, src, 2);
    int32_t i = v;
    std::memcpy(dst, &i, 4);
  } else {
    std::memcpy(dst, src, esz);
  }
}

// Builds the tensor a record describes from its storage's bytes: a view when it is a
// contiguous run of the storage in the final dtype, otherwise a strided gather (a copy).
Tensor tensor_from_storage(const Tensor& storage, const TorchTensorRecord& r) {
  const size_t esz = torch_storage_element_size(r.storage_type);
  const DType dtype = torch_storage_dtype(r.storage_type);
  const auto* base = static_cast<const uint8_t*>(storage.raw_data());
  const int64_t numel = shape_numel(r.shape);
  const bool same_bytes = dtype_size(dtype) == esz;
  if (same_bytes && is_contiguous_view(r.shape, r.strides) &&
      uint64_t(numel) * esz * 2 >= storage.nbytes()) {
    void* p = const_cast<uint8_t*>(base) + size_t(r.offset) * esz;
    return Tensor::from_blob(p, r.shape, dtype, storage.storage());
  }
  Tensor out = Tensor::empty(r.shape, dtype);
  auto* dst = static_cast<uint8_t*>(out.raw_data());
  const size_t dsz = dtype_size(dtype);
  const size_t nd = r.shape.size();
  std::vector<int64_t> idx(nd, 0);
  int64_t src = r.offset;
  for (int64_t i = 0; i < numel; ++i) {
    convert_element(base + size_t(src) * esz, dst + size_t(i) * dsz, r.storage_type, esz);
    for (size_t d = nd; d-- > 0;) {  // next index, last dim fastest
      src += r.strides[d];
      if (++idx[d] < r.shape[d]) break;
      src -= r.strides[d] * r.shape[d];
      idx[d] = 0;
    }
  }
  return out;
}

}  // namespace

WeightFormat detect_weight_format(const std::string& path) {
  return format_of(read_head(path, 16, nullptr));
}

TensorMap load_torch_checkpoint(const std::string& path) {
  ZipReader zip(path);
  const std::string prefix = zip.pickle_prefix();

  if (int64_t bo = zip.find(prefix + "byteorder"); bo >= 0) {
    uint64_t n = zip.entry_size(bo, prefix + "byteorder");
    DF_CHECK(n <= 16, path, ": corrupt checkpoint: byteorder entry of ", n, " bytes");
    std::string order(n, '\0');
    zip.read(bo, prefix + "byteorder", order.data(), n);
    DF_CHECK(order.rfind("little", 0) == 0, path, ": a '", order,
             "'-endian PyTorch checkpoint; only little-endian files are supported");
  }

  const std::string pkl_name = prefix + "data.pkl";
  const int64_t pkl = zip.find(pkl_name);
  DF_CHECK(pkl >= 0, path, ": a zip archive without data.pkl: not a PyTorch checkpoint");
  std::string pickle(zip.entry_size(pkl, pkl_name), '\0');
  zip.read(pkl, pkl_name, pickle.data(), pickle.size());
  auto records = parse_torch_pickle(pickle, path);
  pickle = std::string();

  struct Storage {
    int64_t index;  // zip entry
    uint64_t size;  // bytes
    TorchStorageType type;
    Tensor bytes;  // u8 [size], once read
  };
  // Every record is checked against its entry's size before any storage is read.
  std::map<std::string, Storage> storages;
  for (auto& [name, r] : records) {
    auto it = storages.find(r.storage_key);
    if (it == storages.end()) {
      const std::string entry = prefix + "data/" + r.storage_key;
      int64_t idx = zip.find(entry);
      DF_CHECK(idx >= 0, path, ": corrupt checkpoint: tensor '", name, "' needs storage ",
               r.storage_key, ", but the archive has no entry ", entry);
      it = storages
               .emplace(r.storage_key, Storage{idx, zip.entry_size(idx, entry), r.storage_type, {}})
               .first;
    }
    const Storage& s = it->second;
    DF_CHECK(s.type == r.storage_type, path, ": corrupt checkpoint: storage ", r.storage_key,
             " is used as both ", torch_storage_type_name(s.type), " and ",
             torch_storage_type_name(r.storage_type));
    const uint64_t need = uint64_t(r.storage_numel) * torch_storage_element_size(r.storage_type);
    DF_CHECK(need <= s.size, path, ": corrupt checkpoint: tensor '", name, "': its storage ",
             r.storage_key, " holds ", s.size, " bytes, but the pickle claims ", r.storage_numel,
             " elements of ", torch_storage_element_size(r.storage_type), " bytes");
  }
  TensorMap out;
  for (auto& [name, r] : records) {
    Storage& s = storages.at(r.storage_key);
    if (!s.bytes.defined()) {
      s.bytes = Tensor::empty({int64_t(s.size)}, DType::U8);
      zip.read(s.index, prefix + "data/" + r.storage_key, s.bytes.raw_data(), s.size);
    }
    out[name] = tensor_from_storage(s.bytes, r);
  }
  return out;
}

TensorMap load_weights(const std::string& path, DType dequantized) {
  const std::string head = read_head(path, 16, nullptr);
  switch (format_of(head)) {
    case WeightFormat::Safetensors:
      return load_safetensors(path);
    case WeightFormat::TorchZip:
      return load_torch_checkpoint(path);
    case WeightFormat::Gguf:
      return load_gguf(path, nullptr, dequantized);
    case WeightFormat::Unknown:
      break;
  }
  if (head.size() >= 2 && uint8_t(head[0]) == 0x80 && head[1] >= 2 && head[1] <= 5)
    DF_FAIL(path, ": a legacy (pre-1.6, non-zip) PyTorch checkpoint, which is not supported; ",
            "re-save it with a current torch.save or convert it to safetensors");
  DF_FAIL(path, ": not a safetensors, PyTorch zip or GGUF file");
}

}  // namespace diffuse::io
