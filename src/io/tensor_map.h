// A named set of tensors, as read from or written to a checkpoint file.
#pragma once
#include <map>
#include <string>

#include "core/tensor.h"

namespace diffuse::io {

using TensorMap = std::map<std::string, Tensor>;
using Metadata = std::map<std::string, std::string>;

}  // namespace diffuse::io
