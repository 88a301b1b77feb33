// Small string helpers shared by the name maps (internal to src/io).
#pragma once
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace diffuse::io::detail {

// One renaming rule: a dotted prefix of a name and what replaces it.
struct Rename {
  std::string_view from, to;
};

// "a.b.c" -> {"a", "b", "c"}
std::vector<std::string> split_name(std::string_view name);
// parts[begin, end) joined with '.'
std::string join_name(const std::vector<std::string>& parts, size_t begin,
                      size_t end = std::string::npos);
// "12" -> 12; anything else (empty, sign, letters) -> -1
int parse_index(std::string_view s);

// True when `name` equals `prefix` or continues it with '.'.
bool has_dotted_prefix(std::string_view name, std::string_view prefix);

// Applies the first rule whose `from` is a dotted prefix of `name`; nullopt when none matches.
std::optional<std::string> apply_renames(std::string_view name, std::span<const Rename> rules);

// Like apply_renames, but only for whole leaf modules: what follows the matched prefix must be
// ".weight" or ".bias".
std::optional<std::string> apply_leaf_renames(std::string_view name, std::span<const Rename> rules);

// Matches a dotted name against a pattern whose parts are literal, "#" (an index) or "$"
// ("weight" or "bias"): matches_pattern("layers.3.fc1.bias", "layers.#.fc1.$") == true.
bool matches_pattern(std::string_view name, std::string_view pattern);
bool matches_any(std::string_view name, std::span<const std::string_view> patterns);

// Concatenates non-empty dotted parts: dotted("a.b", "", "c") == "a.b.c".
std::string dotted(std::initializer_list<std::string_view> parts);

}  // namespace diffuse::io::detail
