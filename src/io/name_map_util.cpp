#include "io/name_map_util.h"

#include <algorithm>

namespace diffuse::io::detail {

std::vector<std::string> split_name(std::string_view name) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = name.find('.', start);
    parts.emplace_back(name.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts;
}

std::string join_name(const std::vector<std::string>& parts, size_t begin, size_t end) {
  std::string out;
  end = std::min(end, parts.size());
  for (size_t i = begin; i < end; ++i) {
    if (i > begin) out += '.';
    out += parts[i];
  }
  return out;
}

int parse_index(std::string_view s) {
  if (s.empty() || s.size() > 6) return -1;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

bool has_dotted_prefix(std::string_view name, std::string_view prefix) {
  return name.starts_with(prefix) && (name.size() == prefix.size() || name[prefix.size()] == '.');
}

std::optional<std::string> apply_renames(std::string_view name, std::span<const Rename> rules) {
  for (const Rename& r : rules)
    if (has_dotted_prefix(name, r.from)) return std::string(r.to) += name.substr(r.from.size());
  return std::nullopt;
}

std::optional<std::string> apply_leaf_renames(std::string_view name,
                                              std::span<const Rename> rules) {
  for (const Rename& r : rules) {
    if (!has_dotted_prefix(name, r.from)) continue;
    const std::string_view rest = name.substr(r.from.size());
    if (rest != ".weight" && rest != ".bias") return std::nullopt;
    return std::string(r.to) += rest;
  }
  return std::nullopt;
}

bool matches_pattern(std::string_view name, std::string_view pattern) {
  const std::vector<std::string> n = split_name(name), p = split_name(pattern);
  if (n.size() != p.size()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    if (p[i] == "#") {
      if (parse_index(n[i]) < 0) return false;
    } else if (p[i] == "$") {
      if (n[i] != "weight" && n[i] != "bias") return false;
    } else if (p[i] != n[i]) {
      return false;
    }
  }
  return true;
}

bool matches_any(std::string_view name, std::span<const std::string_view> patterns) {
  for (std::string_view p : patterns)
    if (matches_pattern(name, p)) return true;
  return false;
}

std::string dotted(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view p : parts) {
    if (p.empty()) continue;
    if (!out.empty()) out += '.';
    out += p;
  }
  return out;
}

}  // namespace diffuse::io::detail
