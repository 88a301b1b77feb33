#include "core/json_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace diffuse {

std::string read_file_limited(const std::string& path, size_t max_bytes) {
  // O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  DF_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  DF_CHECK(fstat(fd, &st) == 0, path, ": cannot stat: ", std::strerror(errno));
  DF_CHECK(S_ISREG(st.st_mode), path, ": not a regular file");
  DF_CHECK(size_t(st.st_size) <= max_bytes, path, ": ", st.st_size,
           " bytes, more than the limit of ", max_bytes, " for this kind of file");
  std::string out(size_t(st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t r = ::read(fd, out.data() + got, out.size() - got);
    if (r < 0 && errno == EINTR) continue;
    DF_CHECK(r >= 0, path, ": read failed: ", std::strerror(errno));
    if (r == 0) break;  // the file shrank meanwhile
    got += size_t(r);
  }
  out.resize(got);
  return out;
}

int json_nesting_depth(std::string_view text, int stop_after) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;  // the escaped character can't end the string
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > deepest && (deepest = depth) > stop_after) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

nlohmann::json parse_json(std::string_view text, const std::string& what, int max_depth) {
  const int depth = json_nesting_depth(text, max_depth);
  DF_CHECK(depth <= max_depth, what, ": JSON nested more than ", max_depth,
           " levels deep (refused)");
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    DF_FAIL(what, ": invalid JSON: ", e.what());
  }
}

nlohmann::json read_json_file(const std::string& path, size_t max_bytes, int max_depth) {
  return parse_json(read_file_limited(path, max_bytes), path, max_depth);
}

}  // namespace diffuse
