// Shared helpers of the training golden tests: the reference files and gradient comparisons.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "io/tensor_map.h"
#include "nn/module.h"

namespace diffuse::test {

nlohmann::json read_json_file(const std::string& path);

// Compares the gradient of every parameter of `params` with ref[prefix + name], within `tol`
// relative error (||a - b|| / ||b||; a zero reference gradient must be matched by a zero one).
// Fails for reference gradients without a parameter and parameters without a reference.
void expect_grads_match(const std::vector<nn::Module::ParamRef>& params, const io::TensorMap& ref,
                        const std::string& prefix, double tol);

}  // namespace diffuse::test
