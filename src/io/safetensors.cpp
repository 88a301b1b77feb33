#include "io/safetensors.h"

#include <cstring>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>

#include "core/json_file.h"
#include "io/mmap_file.h"

namespace diffuse::io {
namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr uint64_t kSmallHeaderBytes = uint64_t(1) << 20;

bool parse_dtype(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> kTable[] = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"I64", DType::I64},
      {"I32", DType::I32}, {"U8", DType::U8},   {"I8", DType::I8},     {"BOOL", DType::U8}};
  for (auto& [name, t] : kTable)
    if (s == name) {
      *out = t;
      return true;
    }
  return false;
}

const char* dtype_tag(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
    case DType::I8: return "I8";
  }
  return "?";
}

}  // namespace

TensorMap load_safetensors(const std::string& path, Metadata* metadata) {
  auto file = MappedFile::open(path);
  const size_t size = file->size();
  DF_CHECK(size >= 8, path, ": not a safetensors file (", size, " bytes, too short for a header)");
  uint64_t header_len;
  std::memcpy(&header_len, file->data(), 8);
  DF_CHECK(header_len <= size - 8, path, ": corrupt safetensors header: header length ",
           header_len, " exceeds the file size ", size);
  // The format's own reader refuses headers over 100 MB; a header larger than the data it
  // describes (beyond a small one) is junk: both are refused before the JSON is parsed.
  DF_CHECK(header_len <= kMaxHeaderBytes, path, ": corrupt safetensors header: ", header_len,
           " bytes, more than the format's limit of ", kMaxHeaderBytes);
  DF_CHECK(header_len <= kSmallHeaderBytes || header_len <= size - 8 - header_len, path,
           ": corrupt safetensors header: ", header_len, " bytes for ", size - 8 - header_len,
           " bytes of data (a header larger than its data)");
  const json header = parse_json(std::string_view(file->data() + 8, header_len),
                                 path + ": corrupt safetensors header");
  DF_CHECK(header.is_object(), path, ": corrupt safetensors header: not a JSON object");
  const size_t data_start = 8 + header_len;
  const size_t data_size = size - data_start;
  std::shared_ptr<void> keep = file;
  TensorMap out;
  std::map<uint64_t, uint64_t> ends;  // the non-empty tensors' data: start -> end
  for (auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      if (metadata && info.is_object())
        for (auto& [k, v] : info.items())
          if (v.is_string()) (*metadata)[k] = v.get<std::string>();
      continue;
    }
    DF_CHECK(info.is_object() && info.contains("dtype") && info.contains("shape") &&
                 info.contains("data_offsets"),
             path, ": corrupt safetensors header: tensor '", name, "' lacks dtype/shape/offsets");
    const json& jd = info["dtype"];
    const json& js = info["shape"];
    const json& jo = info["data_offsets"];
    DF_CHECK(jd.is_string() && js.is_array() && jo.is_array() && jo.size() == 2, path,
             ": corrupt safetensors header for tensor '", name, "'");
    DType dt;
    DF_CHECK(parse_dtype(jd.get<std::string>(), &dt), path, ": tensor '", name,
             "' has unsupported dtype ", jd.get<std::string>());
    Shape shape;
    int64_t numel = 1;
    DF_CHECK(js.size() <= 16, path, ": tensor '", name, "' has ", js.size(), " dims");
    for (auto& d : js) {
      // unsigned only (a negative or float dim is corrupt); each dim and the product are
      // bounded before multiplying, so nothing overflows
      DF_CHECK(d.is_number_unsigned() && d.get<uint64_t>() < (uint64_t(1) << 40), path,
               ": tensor '", name, "' has a bad shape ", js.dump());
      int64_t v = int64_t(d.get<uint64_t>());
      shape.push_back(v);
      DF_CHECK(v == 0 || numel <= (int64_t(1) << 42) / v, path, ": tensor '", name,
               "' is too large");
      numel *= v;
    }
    DF_CHECK(jo[0].is_number_unsigned() && jo[1].is_number_unsigned(), path, ": tensor '", name,
             "' has bad data offsets");
    uint64_t b = jo[0].get<uint64_t>(), e = jo[1].get<uint64_t>();
    DF_CHECK(b <= e && e <= data_size, path, ": tensor '", name, "' data [", b, ", ", e,
             ") lies outside the file's ", data_size, " data bytes (truncated file?)");
    DF_CHECK(e - b == uint64_t(numel) * dtype_size(dt), path, ": tensor '", name, "' holds ", e - b,
             " bytes but its shape ", shape_str(shape), " and dtype need ",
             uint64_t(numel) * dtype_size(dt));
    if (e > b) {
      // The format forbids overlapping or shared data (an aliased tensor would change with
      // another's in-place update, and is a common way to craft garbage weights).
      auto next = ends.lower_bound(b);
      DF_CHECK(next == ends.end() || next->first >= e, path, ": tensor '", name, "' data [", b,
               ", ", e, ") overlaps another tensor's (the format forbids it)");
      DF_CHECK(next == ends.begin() || std::prev(next)->second <= b, path, ": tensor '", name,
               "' data [", b, ", ", e, ") overlaps another tensor's (the format forbids it)");
      ends[b] = e;
    }
    void* ptr = const_cast<char*>(file->data() + data_start + b);
    out[name] = Tensor::from_blob(ptr, shape, dt, keep);
  }
  return out;
}

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  save_safetensors(path, tensors, metadata, std::nullopt);
}

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata,
                      std::optional<DType> convert_to) {
  auto dtype_of = [&](const Tensor& t) {
    return convert_to && is_floating(t.dtype()) ? *convert_to : t.dtype();
  };
  json header = json::object();
  if (!metadata.empty()) {
    json m = json::object();
    for (auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  uint64_t offset = 0;
  for (auto& [name, t] : tensors) {
    DF_CHECK(t.defined(), "save_safetensors: tensor '", name, "' is undefined");
    json info;
    const uint64_t bytes = uint64_t(t.numel()) * dtype_size(dtype_of(t));
    info["dtype"] = dtype_tag(dtype_of(t));
    info["shape"] = t.shape();
    info["data_offsets"] = {offset, offset + bytes};
    offset += bytes;
    header[name] = info;
  }
  std::string h = header.dump();
  while ((h.size() + 8) % 8 != 0) h.push_back(' ');  // align data to 8 bytes
  uint64_t hl = h.size();
  AtomicWriter w(path);
  w.write(&hl, 8);
  w.write(h.data(), h.size());
  for (auto& [name, t] : tensors) {
    const Tensor c = t.dtype() == dtype_of(t) ? t.contiguous() : t.to(dtype_of(t));
    w.write(c.raw_data(), c.nbytes());
  }
  w.commit();
}

}  // namespace diffuse::io
