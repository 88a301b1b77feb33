#include "io/name_map_check.h"

#include <map>

namespace diffuse::io {
namespace {

constexpr size_t kMaxListed = 10;

void append_list(std::string& msg, const char* title, const std::vector<std::string>& items) {
  if (items.empty()) return;
  msg += str("; ", title, " (", items.size(), "): ");
  for (size_t i = 0; i < items.size() && i < kMaxListed; ++i) msg += (i ? ", " : "") + items[i];
  if (items.size() > kMaxListed) msg += str(", ... (", items.size() - kMaxListed, " more)");
}

}  // namespace

NamedShapes names_and_shapes(const TensorMap& tensors) {
  NamedShapes out;
  out.reserve(tensors.size());
  for (const auto& [name, t] : tensors) out.emplace_back(name, t.shape());
  return out;
}

void check_tensor_names(const NamedShapes& got, const NamedShapes& expected,
                        const std::string& what) {
  std::map<std::string, const Shape*> want;
  for (const auto& [name, shape] : expected) want.emplace(name, &shape);
  std::vector<std::string> missing, unexpected, mismatched;
  std::map<std::string, bool> present;
  for (const auto& [name, shape] : got) {
    auto it = want.find(name);
    if (it == want.end()) {
      unexpected.push_back(str(name, " ", shape_str(shape)));
      continue;
    }
    present[name] = true;
    if (*it->second != shape)
      mismatched.push_back(
          str(name, ": expected ", shape_str(*it->second), ", got ", shape_str(shape)));
  }
  for (const auto& [name, shape] : expected)
    if (!present.count(name)) missing.push_back(str(name, " ", shape_str(shape)));
  if (missing.empty() && unexpected.empty() && mismatched.empty()) return;
  std::string msg =
      str(what, ": the tensors do not match the model (", missing.size(), " missing, ",
          unexpected.size(), " unexpected, ", mismatched.size(), " with the wrong shape)");
  append_list(msg, "missing", missing);
  append_list(msg, "unexpected", unexpected);
  append_list(msg, "wrong shape", mismatched);
  throw Error(msg);
}

void check_tensor_names(const TensorMap& got, const NamedShapes& expected,
                        const std::string& what) {
  check_tensor_names(names_and_shapes(got), expected, what);
}

}  // namespace diffuse::io
