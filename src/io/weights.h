// Weight files of every format, read into a TensorMap with the file's own tensor names.
#pragma once
#include <string>

#include "io/tensor_map.h"

namespace diffuse::io {

enum class WeightFormat { Safetensors, TorchZip, Gguf, Unknown };

// Detects the format from the file's first bytes (not its extension).
WeightFormat detect_weight_format(const std::string& path);

// PyTorch zip checkpoint (`torch.save`): a restricted unpickler that builds only tensors
// (torch._utils._rebuild_tensor_v2 over FloatStorage/HalfStorage/BFloat16Storage/LongStorage...)
// and plain containers (dict, OrderedDict, list, tuple, str, numbers, None, bool). Objects of
// classes it does not know are skipped; any attempt to call something else (os.system, eval,
// builtins...) is refused with a clear Error and nothing is executed. When the top level holds a
// `state_dict` dict, its tensors are returned; otherwise the top-level dict's tensors.
TensorMap load_torch_checkpoint(const std::string& path);

// GGUF (v2/v3) as written by stable-diffusion.cpp and ggml: F32, F16, BF16 tensors as views or
// copies, quantized Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 dequantized to `dequantized` (F32, exact; or
// BF16, rounded to nearest even, for a bf16 model, which rounds its weights so anyway: half the
// memory). Shapes are returned in PyTorch order (GGUF stores dims innermost first). `metadata`
// gets the string/number KV pairs.
TensorMap load_gguf(const std::string& path, Metadata* metadata = nullptr,
                    DType dequantized = DType::F32);

// Any of the above, by detected format. Errors name the path and the problem.
TensorMap load_weights(const std::string& path, DType dequantized = DType::F32);

}  // namespace diffuse::io
