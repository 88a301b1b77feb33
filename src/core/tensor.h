// Tensor: a strided view over shared storage, in PyTorch dim order ([B, C, H, W]).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace diffuse {

namespace autograd {
struct AutogradMeta;  // defined in src/autograd; core only carries the pointer
}

enum class Device : uint8_t { CPU, CUDA };

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

// A block of bytes. Owned blocks come from the caching allocator; borrowed ones (a
// memory-mapped file, a caller's buffer) keep their owner alive through `keepalive`.
class Storage {
 public:
  static std::shared_ptr<Storage> allocate(size_t bytes);
  static std::shared_ptr<Storage> wrap(void* data, size_t bytes, std::shared_ptr<void> keepalive);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  Storage() = default;
  void* data_ = nullptr;
  size_t size_ = 0;
  bool owned_ = false;
  std::shared_ptr<void> keepalive_;
};

class Tensor {
 public:
  Tensor() = default;

  // Factories (CPU).
  static Tensor empty(const Shape& shape, DType dtype = DType::F32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32);
  static Tensor full(const Shape& shape, float value);
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape);
  static Tensor from_i64(const std::vector<int64_t>& values, const Shape& shape);
  // Views external memory; `keepalive` owns it.
  static Tensor from_blob(void* data, const Shape& shape, DType dtype,
                          std::shared_ptr<void> keepalive = nullptr);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return Device::CPU; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  int64_t dim() const { return int64_t(shape_.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  void* raw_data() const;
  template <typename T>
  T* data() const {
    DF_CHECK(DTypeOf<T>::value == dtype_, "tensor of dtype ", dtype_name(dtype_),
             " accessed as ", dtype_name(DTypeOf<T>::value));
    return static_cast<T*>(raw_data());
  }

  // Views (no copy). view() needs a contiguous tensor; one dim may be -1.
  Tensor view(const Shape& shape) const;
  Tensor reshape(const Shape& shape) const;  // copies when not contiguous
  Tensor permute(const std::vector<int64_t>& order) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end) const;
  Tensor select(int64_t dim, int64_t index) const;  // drops the dim
  Tensor unsqueeze(int64_t dim) const;

  // Copies.
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;  // converts (always a new contiguous tensor unless same dtype)
  void copy_from(const Tensor& src);  // same shape; converts dtype

  // Element read as float (any float dtype), for tests and small tools.
  std::vector<float> to_float_vector() const;
  float item() const;

  std::string desc() const;  // "f32[2, 77, 768]"

  // Autograd state (src/autograd): null for plain tensors. Copies of the handle, including the
  // views above, share it; src/autograd's differentiable functions give their outputs their own.
  const std::shared_ptr<autograd::AutogradMeta>& autograd_meta() const { return autograd_; }
  void set_autograd_meta(std::shared_ptr<autograd::AutogradMeta> m) { autograd_ = std::move(m); }

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_, strides_;
  int64_t offset_ = 0;  // in elements
  DType dtype_ = DType::F32;
  std::shared_ptr<autograd::AutogradMeta> autograd_;
};

Shape contiguous_strides(const Shape& shape);

}  // namespace diffuse
