#include "core/tensor.h"

#include <cstring>

#include "core/allocator.h"
#include "core/half.h"

namespace diffuse {

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t acc = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

// ---- Storage ----

std::shared_ptr<Storage> Storage::allocate(size_t bytes) {
  auto s = std::shared_ptr<Storage>(new Storage());
  s->data_ = host_alloc(bytes);
  s->size_ = bytes;
  s->owned_ = true;
  return s;
}

std::shared_ptr<Storage> Storage::wrap(void* data, size_t bytes, std::shared_ptr<void> keepalive) {
  auto s = std::shared_ptr<Storage>(new Storage());
  s->data_ = data;
  s->size_ = bytes;
  s->keepalive_ = std::move(keepalive);
  return s;
}

Storage::~Storage() {
  if (owned_) host_free(data_, size_);
}

// ---- factories ----

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  for (int64_t d : shape) DF_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  Tensor t;
  t.storage_ = Storage::allocate(size_t(shape_numel(shape)) * dtype_size(dtype));
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.raw_data(), 0, t.nbytes());
  return t;
}

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape, DType::F32);
  float* p = t.data<float>();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = value;
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape) {
  DF_CHECK(int64_t(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
           " values for shape ", shape_str(shape));
  Tensor t = empty(shape, DType::F32);
  std::memcpy(t.raw_data(), values.data(), values.size() * 4);
  return t;
}

Tensor Tensor::from_i64(const std::vector<int64_t>& values, const Shape& shape) {
  DF_CHECK(int64_t(values.size()) == shape_numel(shape), "from_i64: ", values.size(),
           " values for shape ", shape_str(shape));
  Tensor t = empty(shape, DType::I64);
  std::memcpy(t.raw_data(), values.data(), values.size() * 8);
  return t;
}

Tensor Tensor::from_blob(void* data, const Shape& shape, DType dtype,
                         std::shared_ptr<void> keepalive) {
  Tensor t;
  size_t bytes = size_t(shape_numel(shape)) * dtype_size(dtype);
  t.storage_ = Storage::wrap(data, bytes, std::move(keepalive));
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

// ---- accessors ----

int64_t Tensor::size(int64_t d) const {
  int64_t n = dim();
  if (d < 0) d += n;
  DF_CHECK(d >= 0 && d < n, "dimension ", d, " out of range for tensor ", desc());
  return shape_[size_t(d)];
}

bool Tensor::is_contiguous() const {
  int64_t acc = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] != 1 && strides_[i] != acc) return false;
    acc *= shape_[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  DF_CHECK(defined(), "access to an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_ * int64_t(dtype_size(dtype_));
}

std::string Tensor::desc() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype_)) + shape_str(shape_);
}

// ---- views ----

static int64_t wrap_dim(int64_t d, int64_t n, const Tensor& t) {
  if (d < 0) d += n;
  DF_CHECK(d >= 0 && d < n, "dimension out of range for tensor ", t.desc());
  return d;
}

Tensor Tensor::view(const Shape& shape) const {
  Shape s = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      DF_CHECK(infer < 0, "view: more than one -1 in ", shape_str(shape));
      infer = int64_t(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    DF_CHECK(known > 0 && numel() % known == 0, "view: cannot view ", desc(), " as ",
             shape_str(shape));
    s[size_t(infer)] = numel() / known;
  }
  DF_CHECK(shape_numel(s) == numel(), "view: cannot view ", desc(), " as ", shape_str(shape));
  DF_CHECK(is_contiguous(), "view: tensor ", desc(), " is not contiguous");
  Tensor t = *this;
  t.shape_ = s;
  t.strides_ = contiguous_strides(s);
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  return is_contiguous() ? view(shape) : contiguous().view(shape);
}

Tensor Tensor::permute(const std::vector<int64_t>& order) const {
  DF_CHECK(int64_t(order.size()) == dim(), "permute: ", order.size(), " dims for ", desc());
  Tensor t = *this;
  std::vector<bool> seen(order.size(), false);
  for (size_t i = 0; i < order.size(); ++i) {
    int64_t d = wrap_dim(order[i], dim(), *this);
    DF_CHECK(!seen[size_t(d)], "permute: repeated dimension");
    seen[size_t(d)] = true;
    t.shape_[i] = shape_[size_t(d)];
    t.strides_[i] = strides_[size_t(d)];
  }
  return t;
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  a = wrap_dim(a, dim(), *this);
  b = wrap_dim(b, dim(), *this);
  Tensor t = *this;
  std::swap(t.shape_[size_t(a)], t.shape_[size_t(b)]);
  std::swap(t.strides_[size_t(a)], t.strides_[size_t(b)]);
  return t;
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end) const {
  d = wrap_dim(d, dim(), *this);
  int64_t n = shape_[size_t(d)];
  if (start < 0) start += n;
  if (end < 0) end += n;
  DF_CHECK(0 <= start && start <= end && end <= n, "slice [", start, ", ", end, ") out of range ",
           "for dim ", d, " of ", desc());
  Tensor t = *this;
  t.offset_ += start * strides_[size_t(d)];
  t.shape_[size_t(d)] = end - start;
  return t;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), *this);
  int64_t n = shape_[size_t(d)];
  if (index < 0) index += n;
  DF_CHECK(0 <= index && index < n, "select index ", index, " out of range for ", desc());
  Tensor t = *this;
  t.offset_ += index * strides_[size_t(d)];
  t.shape_.erase(t.shape_.begin() + d);
  t.strides_.erase(t.strides_.begin() + d);
  return t;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  if (d < 0) d += dim() + 1;
  DF_CHECK(d >= 0 && d <= dim(), "unsqueeze dim out of range for ", desc());
  Tensor t = *this;
  int64_t st = d < dim() ? strides_[size_t(d)] * shape_[size_t(d)] : 1;
  t.shape_.insert(t.shape_.begin() + d, 1);
  t.strides_.insert(t.strides_.begin() + d, st);
  return t;
}

// ---- copies ----

namespace {

float load_float(const char* p, DType t) {
  switch (t) {
    case DType::F32: { float v; std::memcpy(&v, p, 4); return v; }
    case DType::F16: { uint16_t h; std::memcpy(&h, p, 2); return f16_to_float(h); }
    case DType::BF16: { uint16_t h; std::memcpy(&h, p, 2); return bf16_to_float(h); }
    case DType::I64: { int64_t v; std::memcpy(&v, p, 8); return float(v); }
    case DType::I32: { int32_t v; std::memcpy(&v, p, 4); return float(v); }
    case DType::U8: return float(*reinterpret_cast<const uint8_t*>(p));
    case DType::I8: return float(*reinterpret_cast<const int8_t*>(p));
  }
  return 0;
}

void store_float(char* p, DType t, float v) {
  switch (t) {
    case DType::F32: std::memcpy(p, &v, 4); break;
    case DType::F16: { uint16_t h = float_to_f16(v); std::memcpy(p, &h, 2); break; }
    case DType::BF16: { uint16_t h = float_to_bf16(v); std::memcpy(p, &h, 2); break; }
    case DType::I64: { int64_t x = int64_t(v); std::memcpy(p, &x, 8); break; }
    case DType::I32: { int32_t x = int32_t(v); std::memcpy(p, &x, 4); break; }
    case DType::U8: *reinterpret_cast<uint8_t*>(p) = uint8_t(v); break;
    case DType::I8: *reinterpret_cast<int8_t*>(p) = int8_t(v); break;
  }
}

// Iterates the elements of `src` in logical (row-major) order, handing each to `fn`
// together with its linear index. Innermost dim is a tight loop.
template <typename Fn>
void for_each_strided(const Tensor& t, Fn fn) {
  const int64_t nd = t.dim();
  const int64_t n = t.numel();
  if (n == 0) return;
  const char* base = static_cast<const char*>(t.raw_data());
  const int64_t es = int64_t(dtype_size(t.dtype()));
  if (nd == 0) {
    fn(int64_t(0), base);
    return;
  }
  std::vector<int64_t> idx(size_t(nd), 0);
  const int64_t inner = t.shape()[size_t(nd - 1)];
  const int64_t inner_stride = t.strides()[size_t(nd - 1)] * es;
  for (int64_t lin = 0; lin < n; lin += inner) {
    int64_t off = 0;
    for (int64_t d = 0; d < nd - 1; ++d) off += idx[size_t(d)] * t.strides()[size_t(d)];
    const char* p = base + off * es;
    for (int64_t j = 0; j < inner; ++j) fn(lin + j, p + j * inner_stride);
    for (int64_t d = nd - 2; d >= 0; --d) {
      if (++idx[size_t(d)] < t.shape()[size_t(d)]) break;
      idx[size_t(d)] = 0;
    }
  }
}

}  // namespace

void Tensor::copy_from(const Tensor& src) {
  DF_CHECK(src.shape() == shape_, "copy_from: shape ", src.desc(), " into ", desc());
  DF_CHECK(is_contiguous(), "copy_from: destination must be contiguous");
  char* dst = static_cast<char*>(raw_data());
  const size_t des = dtype_size(dtype_);
  if (src.dtype() == dtype_ && src.is_contiguous()) {
    std::memcpy(dst, src.raw_data(), nbytes());
    return;
  }
  if (src.dtype() == dtype_) {
    for_each_strided(src, [&](int64_t i, const char* p) { std::memcpy(dst + i * des, p, des); });
    return;
  }
  const DType st = src.dtype();
  const DType dt = dtype_;
  if (st == DType::I64 && dt == DType::I32) {
    for_each_strided(src, [&](int64_t i, const char* p) {
      int64_t v; std::memcpy(&v, p, 8);
      int32_t w = int32_t(v); std::memcpy(dst + i * 4, &w, 4);
    });
    return;
  }
  for_each_strided(src, [&](int64_t i, const char* p) { store_float(dst + i * des, dt, load_float(p, st)); });
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  Tensor t = empty(shape_, dtype_);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor t = empty(shape_, dtype);
  t.copy_from(*this);
  return t;
}

std::vector<float> Tensor::to_float_vector() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  const DType st = dtype_;
  for_each_strided(*this, [&](int64_t i, const char* p) { out[size_t(i)] = load_float(p, st); });
  return out;
}

float Tensor::item() const {
  DF_CHECK(numel() == 1, "item() of a tensor with ", numel(), " elements");
  return to_float_vector()[0];
}

}  // namespace diffuse
