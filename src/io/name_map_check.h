// Strict loading: compares the tensors a model got with the ones it expects, and reports every
// difference (missing, unexpected, wrong shape) in one Error.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "io/tensor_map.h"

namespace diffuse::io {

using NamedShapes = std::vector<std::pair<std::string, Shape>>;

// The names and shapes of a TensorMap, in name order.
NamedShapes names_and_shapes(const TensorMap& tensors);

// Throws one Error, starting with `what`, that lists the missing, unexpected and wrong-shaped
// tensors (up to 10 of each kind, then a count); returns when the sets agree exactly.
void check_tensor_names(const NamedShapes& got, const NamedShapes& expected,
                        const std::string& what);
void check_tensor_names(const TensorMap& got, const NamedShapes& expected, const std::string& what);

}  // namespace diffuse::io
