// The full-size manifests (reference manifests/manifests.json): for each key, the name -> shape
// of every tensor, with keys "<model>/single_file" (or "<model>/single_file/<component>") and
// "<model>/diffusers/<component>".
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "io/name_map_check.h"

namespace diffuse::io {

inline NamedShapes manifest_entries(const nlohmann::json& j) {
  NamedShapes out;
  for (const auto& [name, shape] : j.items()) out.emplace_back(name, shape.get<Shape>());
  return out;
}

// The single-file names of each model, its component entries joined.
inline std::map<std::string, NamedShapes> single_file_manifests(const nlohmann::json& manifests) {
  std::map<std::string, NamedShapes> singles;
  for (const auto& [key, entries] : manifests.items()) {
    const size_t slash = key.find('/');
    if (slash == std::string::npos || !entries.is_object()) continue;
    const std::string model = key.substr(0, slash), rest = key.substr(slash + 1);
    if (rest == "single_file" || rest.starts_with("single_file/")) {
      const NamedShapes e = manifest_entries(entries);
      singles[model].insert(singles[model].end(), e.begin(), e.end());
    }
  }
  return singles;
}

}  // namespace diffuse::io
