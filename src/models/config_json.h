// Helpers for writing model configs as JSON.
#pragma once
#include <charconv>
#include <cstdlib>
#include <string>

namespace diffuse::models {

// A float as the double with the same shortest decimal form (1e-5f -> 1e-05, not
// 9.99999974737875e-06), so config.json files read like the published ones and parse back to
// the same float.
inline double json_float(float v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf) - 1, v);
  *r.ptr = '\0';
  return std::strtod(buf, nullptr);
}

}  // namespace diffuse::models
