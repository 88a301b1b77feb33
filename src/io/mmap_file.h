// Read-only memory mapping of a whole file; tensors loaded from it keep it alive.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

namespace diffuse::io {

class MappedFile {
 public:
  // Throws diffuse::Error naming the file when it cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const char* data() const { return static_cast<const char*>(data_); }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Hands the whole pages inside [p, p + n) back to the OS (they are re-read from the file if
  // touched again): for data that was copied or converted out of the mapping.
  void release(const void* p, size_t n) const;

 private:
  MappedFile() = default;
  void* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// Reads a whole (small: at most kJsonMaxBytes) regular file into a string; throws with the path
// on failure (core/json_file.h's read_file_limited).
std::string read_text_file(const std::string& path);

// Writes through a temporary file in the same folder, renamed into place when complete,
// so that a reader never sees half a file.
class AtomicWriter {
 public:
  explicit AtomicWriter(const std::string& path);
  ~AtomicWriter();  // removes the temporary file unless commit() ran
  void write(const void* data, size_t n);
  void commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool done_ = false;
};

}  // namespace diffuse::io
