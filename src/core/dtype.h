// Element types and their sizes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace diffuse {

enum class DType : uint8_t { F32, F16, BF16, I64, I32, U8, I8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
bool is_floating(DType t);

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::F32;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType value = DType::I64;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::I32;
};
template <>
struct DTypeOf<uint8_t> {
  static constexpr DType value = DType::U8;
};
template <>
struct DTypeOf<int8_t> {
  static constexpr DType value = DType::I8;
};

}  // namespace diffuse
