// diffuse::Error and the checking macros used at every API boundary.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace diffuse {

// The one exception type of the project. Messages carry context: file, tensor name,
// expected vs actual. Kernels never throw; dispatch checks preconditions.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

// Builds a message from the streamed pieces: str("expected ", a, " got ", b).
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

}  // namespace diffuse

#define DF_CHECK(cond, ...)                                   \
  do {                                                        \
    if (!(cond)) throw ::diffuse::Error(::diffuse::str(__VA_ARGS__)); \
  } while (0)

#define DF_FAIL(...) throw ::diffuse::Error(::diffuse::str(__VA_ARGS__))
