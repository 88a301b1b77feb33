// A restricted reader for the pickle inside a PyTorch zip checkpoint (`archive/data.pkl`).
// It interprets the opcodes torch.save emits (protocol 2, and the rest of protocols 0-5 that
// plain data needs) over an inert value model: nothing is ever called or imported. Known
// torch globals (tensor rebuild functions, storage types, OrderedDict, torch.Size) are given
// their data meaning; any other class becomes an inert placeholder; references to
// code-running callables (os.system, eval, subprocess...) make the load fail.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace diffuse::io {

// Element type of a torch storage class (torch.FloatStorage, ...).
enum class TorchStorageType { F32, F64, F16, BF16, I64, I32, I16, I8, U8, Bool };

size_t torch_storage_element_size(TorchStorageType t);
const char* torch_storage_type_name(TorchStorageType t);  // "HalfStorage"
// The DType the tensor gets in diffuse (F64 -> F32, I16 -> I32, Bool -> U8).
DType torch_storage_dtype(TorchStorageType t);

// One tensor of the checkpoint, not yet read: where its data lies and how it views it.
struct TorchTensorRecord {
  std::string storage_key;  // the zip entry `archive/data/<storage_key>`
  TorchStorageType storage_type = TorchStorageType::F32;
  int64_t storage_numel = 0;  // elements of the storage, as the pickle claims
  int64_t offset = 0;         // elements
  Shape shape, strides;       // strides in elements
};

// Parses `bytes` (the whole data.pkl). Returns the tensors of the top-level `state_dict`
// entry when it is a dict, otherwise of the top-level dict, in file order (a repeated name
// keeps its last value). Non-tensor entries are skipped. Throws diffuse::Error naming `path`:
// "refusing to load PATH: its pickle calls os.system ..." for code-running globals, "corrupt
// pickle" with the byte offset for malformed input. Memory use and work are linear in
// bytes.size(): a pickle that builds or copies more items than a budget proportional to its
// size (a set rebuilt from a long list over and over), or whose tensors expand one stored value
// into more than 2^24 elements in all, is refused as corrupt.
std::vector<std::pair<std::string, TorchTensorRecord>> parse_torch_pickle(std::string_view bytes,
                                                                          const std::string& path);

}  // namespace diffuse::io
