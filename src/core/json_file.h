// Reading JSON and other small files from disk with limits, so that a hostile config is one
// clear error: a special file (a FIFO, a device) is refused instead of blocking, a file over the
// size limit is refused before it is read, and a nesting deeper than the depth limit is refused
// before a DOM is built (nlohmann's copy and dump recurse, and a million nested brackets overflow
// the stack).
#pragma once
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace diffuse {

// Deeper than any real config (diffusers': 3; a tokenizer.json: 6).
inline constexpr int kJsonMaxDepth = 128;
// Larger than any real config or tokenizer file (a CLIP tokenizer.json is about 3.6 MB).
inline constexpr size_t kJsonMaxBytes = size_t(64) << 20;

// The whole of a regular file, at most max_bytes; throws an Error naming the path when it is
// missing, not a regular file, larger, or unreadable. Never blocks on a FIFO.
std::string read_file_limited(const std::string& path, size_t max_bytes);

// The largest nesting depth of arrays and objects in `text` (strings skipped), counted up to
// stop_after + 1 at most: linear, without building anything.
int json_nesting_depth(std::string_view text, int stop_after = kJsonMaxDepth);

// Parses `text`; `what` (a path, "scheduler config") names it in the Error thrown for invalid
// JSON or nesting deeper than max_depth.
nlohmann::json parse_json(std::string_view text, const std::string& what,
                          int max_depth = kJsonMaxDepth);

// read_file_limited + parse_json: the one way a config/model JSON file is read.
nlohmann::json read_json_file(const std::string& path, size_t max_bytes = kJsonMaxBytes,
                              int max_depth = kJsonMaxDepth);

}  // namespace diffuse
