#include "io/gguf.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <vector>

#include "core/half.h"
#include "core/parallel.h"
#include "io/mmap_file.h"
#include "io/weights.h"

namespace diffuse::io {

const char* ggml_type_name(uint32_t type) {
  static const char* kNames[] = {
      "F32",     "F16",    "Q4_0",    "Q4_1",  "Q4_2",   "Q4_3",  "Q5_0",  "Q5_1",
      "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
      "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
      "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16"};
  if (type < sizeof(kNames) / sizeof(kNames[0])) return kNames[type];
  return "an unknown type";
}

bool ggml_type_supported(uint32_t type) {
  switch (GgmlType(type)) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::F64:
    case GgmlType::I8:
    case GgmlType::I16:
    case GgmlType::I32:
    case GgmlType::I64:
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q8_0:
      return true;
  }
  return false;
}

bool ggml_type_quantized(GgmlType type) {
  return ggml_block_elements(type) > 1;
}

int64_t ggml_block_elements(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q8_0:
      return 32;
    default:
      return 1;
  }
}

size_t ggml_block_bytes(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
      return 4;
    case GgmlType::F16:
      return 2;
    case GgmlType::BF16:
      return 2;
    case GgmlType::F64:
      return 8;
    case GgmlType::I8:
      return 1;
    case GgmlType::I16:
      return 2;
    case GgmlType::I32:
      return 4;
    case GgmlType::I64:
      return 8;
    case GgmlType::Q4_0:
      return 2 + 16;
    case GgmlType::Q4_1:
      return 2 + 2 + 16;
    case GgmlType::Q5_0:
      return 2 + 4 + 16;
    case GgmlType::Q5_1:
      return 2 + 2 + 4 + 16;
    case GgmlType::Q8_0:
      return 2 + 32;
  }
  return 1;
}

namespace {

inline float half_at(const uint8_t* p) {
  return f16_to_float(uint16_t(p[0] | (p[1] << 8)));
}

// One block of 32 elements. `scale` and `min` are the block's d and m (m = 0 for the
// symmetric types, whose codes are re-centred by `bias`); `high` holds the fifth bits (or 0).
inline void nibble_block(const uint8_t* qs, uint32_t high, int bias, float scale, float min,
                         float* out) {
  for (int j = 0; j < 16; ++j) {
    int lo = (qs[j] & 0x0f) | int((high >> j) & 1u) << 4;
    int hi = (qs[j] >> 4) | int((high >> (j + 16)) & 1u) << 4;
    out[j] = float(lo - bias) * scale + min;
    out[j + 16] = float(hi - bias) * scale + min;
  }
}

inline uint32_t u32_at(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

void dequantize_block(GgmlType type, const uint8_t* b, float* out) {
  switch (type) {
    case GgmlType::Q4_0:
      nibble_block(b + 2, 0, 8, half_at(b), 0.f, out);
      break;
    case GgmlType::Q4_1:
      nibble_block(b + 4, 0, 0, half_at(b), half_at(b + 2), out);
      break;
    case GgmlType::Q5_0:
      nibble_block(b + 6, u32_at(b + 2), 16, half_at(b), 0.f, out);
      break;
    case GgmlType::Q5_1:
      nibble_block(b + 8, u32_at(b + 4), 0, half_at(b), half_at(b + 2), out);
      break;
    case GgmlType::Q8_0: {
      const float d = half_at(b);
      for (int j = 0; j < 32; ++j) out[j] = float(int8_t(b[2 + j])) * d;
      break;
    }
    default:
      break;
  }
}

// Bounds-checked little-endian reads over the mapped header.
class Reader {
 public:
  explicit Reader(const MappedFile& f)
      : p_(reinterpret_cast<const uint8_t*>(f.data())), n_(f.size()), path_(f.path()) {}

  [[noreturn]] void corrupt(const std::string& why) const {
    DF_FAIL(path_, ": corrupt GGUF file at byte ", pos_, ": ", why);
  }
  uint64_t left() const { return n_ - pos_; }
  void need(uint64_t k) const {
    if (k > left()) corrupt("truncated (needs " + std::to_string(k) + " more bytes)");
  }
  uint64_t uint(int bytes) {
    need(uint64_t(bytes));
    uint64_t v = 0;
    for (int k = 0; k < bytes; ++k) v |= uint64_t(p_[pos_ + size_t(k)]) << (8 * k);
    pos_ += size_t(bytes);
    return v;
  }
  std::string str() {
    uint64_t len = uint(8);
    need(len);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(len));
    pos_ += size_t(len);
    return s;
  }
  void skip(uint64_t k) {
    need(k);
    pos_ += size_t(k);
  }
  size_t pos() const { return pos_; }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  std::string path_;
};

// GGUF metadata value types.
enum : uint32_t {
  kU8 = 0,
  kI8,
  kU16,
  kI16,
  kU32,
  kI32,
  kF32,
  kBool,
  kString,
  kArray,
  kU64,
  kI64,
  kF64,
};

size_t scalar_size(uint32_t t) {
  switch (t) {
    case kU8:
    case kI8:
    case kBool:
      return 1;
    case kU16:
    case kI16:
      return 2;
    case kU32:
    case kI32:
    case kF32:
      return 4;
    case kU64:
    case kI64:
    case kF64:
      return 8;
    default:
      return 0;
  }
}

// Reads one metadata value; scalars and strings come back as text (arrays as "").
// *number gets integer values (for general.alignment).
std::string read_value(Reader& r, uint32_t type, int depth, bool* is_int, uint64_t* number) {
  *is_int = false;
  if (type == kString) return r.str();
  if (type == kArray) {
    if (depth > 2) r.corrupt("nested arrays too deep");
    uint32_t et = uint32_t(r.uint(4));
    uint64_t count = r.uint(8);
    if (size_t es = scalar_size(et)) {
      if (count > r.left() / es) r.corrupt("array of " + std::to_string(count) + " elements");
      r.skip(count * es);
    } else if (et == kString || et == kArray) {
      if (count > r.left() / (et == kString ? 8 : 12))
        r.corrupt("array of " + std::to_string(count) + " elements");
      bool i;
      uint64_t nm;
      for (uint64_t k = 0; k < count; ++k) read_value(r, et, depth + 1, &i, &nm);
    } else {
      r.corrupt("array of unknown value type " + std::to_string(et));
    }
    return "";
  }
  size_t size = scalar_size(type);
  if (size == 0) r.corrupt("unknown value type " + std::to_string(type));
  uint64_t u = r.uint(int(size));
  switch (type) {
    case kF32: {
      float f;
      uint32_t b = uint32_t(u);
      std::memcpy(&f, &b, 4);
      return std::to_string(f);
    }
    case kF64: {
      double f;
      std::memcpy(&f, &u, 8);
      return std::to_string(f);
    }
    case kBool:
      return u ? "true" : "false";
    case kI8:
      u = uint64_t(int64_t(int8_t(u)));
      break;
    case kI16:
      u = uint64_t(int64_t(int16_t(u)));
      break;
    case kI32:
      u = uint64_t(int64_t(int32_t(u)));
      break;
    default:
      break;
  }
  *is_int = true;
  *number = u;
  bool is_signed = type == kI8 || type == kI16 || type == kI32 || type == kI64;
  return is_signed ? std::to_string(int64_t(u)) : std::to_string(u);
}

struct TensorInfo {
  std::string name;
  Shape shape;  // PyTorch order
  GgmlType type;
  uint64_t offset, nbytes;
};

Tensor make_tensor(const std::shared_ptr<MappedFile>& file, const uint8_t* data,
                   const TensorInfo& t, DType dequantized) {
  const int64_t numel = shape_numel(t.shape);
  std::shared_ptr<void> keep = file;
  auto view_or_copy = [&](DType dt) {
    void* p = const_cast<uint8_t*>(data);
    if (reinterpret_cast<uintptr_t>(p) % dtype_size(dt) == 0)
      return Tensor::from_blob(p, t.shape, dt, keep);
    Tensor out = Tensor::empty(t.shape, dt);
    std::memcpy(out.raw_data(), data, out.nbytes());
    return out;
  };
  switch (t.type) {
    case GgmlType::F32:
      return view_or_copy(DType::F32);
    case GgmlType::F16:
      return view_or_copy(DType::F16);
    case GgmlType::BF16:
      return view_or_copy(DType::BF16);
    case GgmlType::I8:
      return view_or_copy(DType::I8);
    case GgmlType::I32:
      return view_or_copy(DType::I32);
    case GgmlType::I64:
      return view_or_copy(DType::I64);
    case GgmlType::I16: {
      Tensor out = Tensor::empty(t.shape, DType::I32);
      int32_t* o = out.data<int32_t>();
      for (int64_t i = 0; i < numel; ++i) {
        int16_t v;
        std::memcpy(&v, data + 2 * i, 2);
        o[i] = v;
      }
      return out;
    }
    case GgmlType::F64: {
      Tensor out = Tensor::empty(t.shape, DType::F32);
      float* o = out.data<float>();
      for (int64_t i = 0; i < numel; ++i) {
        double v;
        std::memcpy(&v, data + 8 * i, 8);
        o[i] = float(v);
      }
      return out;
    }
    default: {
      Tensor out = Tensor::empty(t.shape, dequantized);
      const size_t bb = ggml_block_bytes(t.type);
      const int64_t be = ggml_block_elements(t.type);
      const bool to_f32 = dequantized == DType::F32;
      parallel_for(numel / be, 1024, [&](int64_t b0, int64_t b1) {
        std::vector<float> block(to_f32 ? 0 : static_cast<size_t>(be));  // bf16: via f32
        for (int64_t b = b0; b < b1; ++b) {
          float* f = to_f32 ? out.data<float>() + b * be : block.data();
          dequantize_block(t.type, data + size_t(b) * bb, f);
          if (to_f32) continue;
          uint16_t* o = static_cast<uint16_t*>(out.raw_data()) + b * be;
          for (int64_t i = 0; i < be; ++i) o[i] = float_to_bf16(f[i]);
        }
      });
      file->release(data, t.nbytes);  // the blocks are not read again
      return out;
    }
  }
}

}  // namespace

void ggml_dequantize(GgmlType type, const void* blocks, float* out, int64_t n) {
  const int64_t be = ggml_block_elements(type);
  DF_CHECK(be > 1 && n % be == 0, "ggml_dequantize: ", ggml_type_name(uint32_t(type)),
           " is not a block type or ", n, " is not a multiple of its block size");
  const auto* b = static_cast<const uint8_t*>(blocks);
  for (int64_t k = 0; k < n / be; ++k)
    dequantize_block(type, b + size_t(k) * ggml_block_bytes(type), out + k * be);
}

namespace {

// A GGUF file's header: its tensors (checked) and where their data starts.
struct GgufIndex {
  std::shared_ptr<MappedFile> file;
  std::vector<TensorInfo> infos;
  uint64_t data_start = 0;
};

GgufIndex read_index(const std::string& path, Metadata* metadata) {
  auto file = MappedFile::open(path);
  Reader r(*file);
  r.need(4);
  DF_CHECK(std::memcmp(file->data(), "GGUF", 4) == 0, path, ": not a GGUF file (bad magic)");
  r.skip(4);
  const uint32_t version = uint32_t(r.uint(4));
  DF_CHECK(version == 2 || version == 3, path, ": GGUF version ", version,
           version == 1 ? " (the first, pre-release format)" : "",
           " is not supported (versions 2 and 3 are; a big-endian file?)");
  const uint64_t n_tensors = r.uint(8);
  const uint64_t n_kv = r.uint(8);
  // every entry needs at least this many bytes, so counts beyond the file are corrupt
  if (n_kv > r.left() / 13) r.corrupt("claims " + std::to_string(n_kv) + " metadata entries");
  uint64_t alignment = 32;
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = r.str();
    uint32_t type = uint32_t(r.uint(4));
    bool is_int;
    uint64_t number = 0;
    std::string value = read_value(r, type, 0, &is_int, &number);
    if (key == "general.alignment") {
      if (!is_int || number == 0 || number > (1u << 20) || (number & (number - 1)) != 0)
        r.corrupt("general.alignment is not a power of two up to 1 MiB");
      alignment = number;
    }
    if (metadata && type != kArray) (*metadata)[key] = value;
  }
  if (n_tensors > r.left() / 24) r.corrupt("claims " + std::to_string(n_tensors) + " tensors");
  std::vector<TensorInfo> infos;
  infos.reserve(size_t(n_tensors));
  std::set<std::string> names;
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo t;
    t.name = r.str();
    if (!names.insert(t.name).second) r.corrupt("tensor '" + t.name + "' appears twice");
    uint32_t n_dims = uint32_t(r.uint(4));
    if (n_dims > 8) r.corrupt("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dims");
    std::vector<int64_t> ne(n_dims);
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t v = r.uint(8);
      if (v > (uint64_t(1) << 48))
        r.corrupt("tensor '" + t.name + "' has a dim of " + std::to_string(v));
      ne[d] = int64_t(v);
      if (v != 0 && numel > (int64_t(1) << 50) / int64_t(v))
        r.corrupt("tensor '" + t.name + "' is too large");
      numel *= int64_t(v);
    }
    t.shape.assign(ne.rbegin(), ne.rend());  // GGUF lists dims innermost first
    uint32_t type = uint32_t(r.uint(4));
    if (!ggml_type_supported(type))
      DF_FAIL(path, ": tensor '", t.name, "' has GGML type ", ggml_type_name(type), " (", type,
              "), which diffuse does not read (it reads F32, F16, BF16, Q8_0, Q5_1, Q5_0, Q4_1, "
              "Q4_0)");
    t.type = GgmlType(type);
    const int64_t be = ggml_block_elements(t.type);
    if (be > 1 && (n_dims == 0 || ne[0] % be != 0))
      r.corrupt("tensor '" + t.name + "' rows of " + std::to_string(n_dims ? ne[0] : 1) +
                " elements are not whole " + ggml_type_name(type) + " blocks");
    t.nbytes = uint64_t(numel / be) * ggml_block_bytes(t.type);
    t.offset = r.uint(8);
    infos.push_back(std::move(t));
  }
  const uint64_t data_start =
      std::min<uint64_t>((r.pos() + alignment - 1) / alignment * alignment, file->size());
  return {file, std::move(infos), data_start};
}

}  // namespace

std::map<std::string, int64_t> gguf_tensor_types(const std::string& path) {
  std::map<std::string, int64_t> out;
  for (const TensorInfo& t : read_index(path, nullptr).infos)
    out[ggml_type_name(uint32_t(t.type))] += 1;
  return out;
}

TensorMap load_gguf(const std::string& path, Metadata* metadata, DType dequantized) {
  DF_CHECK(dequantized == DType::F32 || dequantized == DType::BF16,
           "load_gguf: quantized tensors dequantize to f32 or bf16, not ", dtype_name(dequantized));
  const GgufIndex index = read_index(path, metadata);
  const auto& file = index.file;
  const uint64_t data_size = file->size() - index.data_start;
  const auto* data = reinterpret_cast<const uint8_t*>(file->data()) + index.data_start;
  TensorMap out;
  for (const TensorInfo& t : index.infos) {
    // Integer tensors hold ids (position_ids), never weights: an integer weight is a broken or
    // hostile file, not something to convert silently.
    const bool integer = t.type == GgmlType::I8 || t.type == GgmlType::I16 ||
                         t.type == GgmlType::I32 || t.type == GgmlType::I64;
    const std::string_view ids = "position_ids";
    DF_CHECK(!integer || std::string_view(t.name).ends_with(ids), path, ": tensor '", t.name,
             "' has the integer type ", ggml_type_name(uint32_t(t.type)),
             ", where diffuse expects floating-point weights");
    DF_CHECK(t.offset <= data_size && t.nbytes <= data_size - t.offset, path, ": tensor '", t.name,
             "' data [", t.offset, ", +", t.nbytes, ") lies outside the file's ", data_size,
             " data bytes (truncated file?)");
    out[t.name] = make_tensor(file, data + t.offset, t, dequantized);
  }
  return out;
}

}  // namespace diffuse::io
