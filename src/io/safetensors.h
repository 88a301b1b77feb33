// safetensors: an 8-byte little-endian header length, a JSON header, then raw data.
#pragma once
#include <optional>
#include <string>

#include "io/tensor_map.h"

namespace diffuse::io {

// Memory-maps the file; the returned tensors view the mapping (no copy). Validates the
// header fully: dtypes, shapes, offsets inside the file, no overlaps past the end.
TensorMap load_safetensors(const std::string& path, Metadata* metadata = nullptr);

// Writes atomically (temporary file, then rename). Tensors may be strided views.
void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const Metadata& metadata = {});
// The same with every floating-point tensor converted to `convert_to` (integers kept), one
// tensor at a time as it is written: at most one converted tensor is held.
void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata,
                      std::optional<DType> convert_to);

}  // namespace diffuse::io
