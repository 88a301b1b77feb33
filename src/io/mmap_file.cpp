#include "io/mmap_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/json_file.h"

namespace diffuse::io {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO: no waiting
  DF_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  struct stat st{};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    DF_FAIL(path, ": not a regular file");
  }
  auto f = std::shared_ptr<MappedFile>(new MappedFile());
  f->path_ = path;
  f->size_ = size_t(st.st_size);
  if (f->size_ > 0) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      DF_FAIL(path, ": cannot map: ", std::strerror(errno));
    }
    f->data_ = p;
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_) munmap(data_, size_);
}

void MappedFile::release(const void* p, size_t n) const {
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t lo = std::max(uintptr_t(p), uintptr_t(data_));
  const uintptr_t hi = std::min(uintptr_t(p) + n, uintptr_t(data_) + size_);
  const uintptr_t b = (lo + page - 1) / page * page, e = hi / page * page;
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);  // a read-only mapping
}

std::string read_text_file(const std::string& path) {
  return read_file_limited(path, kJsonMaxBytes);
}

AtomicWriter::AtomicWriter(const std::string& path) : path_(path) {
  tmp_ = path + ".tmp-" + std::to_string(getpid());
  // A new file of our own: never through a link or special file left at the temporary name.
  ::unlink(tmp_.c_str());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  DF_CHECK(fd_ >= 0, path, ": cannot write: ", std::strerror(errno));
}

AtomicWriter::~AtomicWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!done_) ::unlink(tmp_.c_str());
}

void AtomicWriter::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    DF_CHECK(w > 0, path_, ": write failed: ", std::strerror(errno));
    p += w;
    n -= size_t(w);
  }
}

void AtomicWriter::commit() {
  DF_CHECK(::fsync(fd_) == 0 || errno == EINVAL, path_, ": fsync failed: ", std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
  DF_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, path_, ": cannot rename into place: ",
           std::strerror(errno));
  done_ = true;
}

}  // namespace diffuse::io
