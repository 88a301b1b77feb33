// GGML tensor types found in GGUF files, their block layouts and dequantization to f32.
// (load_gguf itself is declared in io/weights.h.)
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace diffuse::io {

// The ids GGUF stores for each tensor (ggml's `enum ggml_type`), those diffuse reads.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
};

// Block layouts (little-endian; d and m are IEEE halves), 32 elements per block:
//   Q4_0: d, 16 bytes of nibbles           x[i] = (q[i] - 8) * d
//   Q4_1: d, m, 16 bytes of nibbles        x[i] = q[i] * d + m
//   Q5_0: d, u32 high bits, 16 bytes       x[i] = (q[i] - 16) * d, q = nibble | bit << 4
//   Q5_1: d, m, u32 high bits, 16 bytes    x[i] = q[i] * d + m
//   Q8_0: d, 32 int8                       x[i] = q[i] * d
// Nibble bytes hold element j (low nibble) and element j + 16 (high nibble); bit j of the
// high-bits word belongs to element j.

// "Q4_K", "type 99"... for any id (for messages).
const char* ggml_type_name(uint32_t type);
// Whether load_gguf reads this type.
bool ggml_type_supported(uint32_t type);
bool ggml_type_quantized(GgmlType type);
// Elements per block (1 for plain types) and bytes per block.
int64_t ggml_block_elements(GgmlType type);
size_t ggml_block_bytes(GgmlType type);

// How many tensors of each GGML type ("Q8_0", "F16"...) a GGUF file stores (its header only).
std::map<std::string, int64_t> gguf_tensor_types(const std::string& path);

// Dequantizes n elements (a multiple of the block size) of a quantized type to f32.
void ggml_dequantize(GgmlType type, const void* blocks, float* out, int64_t n);

}  // namespace diffuse::io
