// Atomic file replacement: temporary file in the same folder, fsync, rename.
#include "mixq/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "mixq/base/error.h"

namespace mixq {
namespace {

constexpr size_t kBufferBytes = 1 << 20;

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  namespace fs = std::filesystem;
  const fs::path target(path_);
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::string name_template = (dir / ("." + target.filename().string() + ".tmp.XXXXXX")).string();
  std::vector<char> buf(name_template.begin(), name_template.end());
  buf.push_back('\0');
  fd_ = ::mkstemp(buf.data());
  if (fd_ < 0) Fail("cannot create a temporary file to write '{}' in '{}': {}", path_, dir.string(), std::strerror(errno));
  temp_path_ = buf.data();
  // mkstemp creates 0600; a model file should be readable like any other file the user writes.
  const mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd_, 0666 & ~mask);
  buffer_.reserve(kBufferBytes);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
}

void AtomicFile::WriteAll(const char* data, size_t bytes) {
  size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::write(fd_, data + done, bytes - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      Fail("cannot write '{}' (temporary file '{}'): {}", path_, temp_path_, std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
}

void AtomicFile::Flush() {
  WriteAll(buffer_.data(), buffer_.size());
  buffer_.clear();
}

void AtomicFile::Write(const void* data, size_t bytes) {
  if (committed_) Fail("'{}': write after commit", path_);
  const char* p = static_cast<const char*>(data);
  bytes_written_ += bytes;
  if (buffer_.size() + bytes <= kBufferBytes) {
    buffer_.append(p, bytes);
    return;
  }
  Flush();
  if (bytes < kBufferBytes) {
    buffer_.append(p, bytes);
    return;
  }
  // Large tensors go straight from their (usually mmapped) source to the file.
  WriteAll(p, bytes);
}

void AtomicFile::WriteZeros(size_t bytes) {
  static const char kZeros[4096] = {};
  while (bytes > 0) {
    const size_t n = bytes < sizeof kZeros ? bytes : sizeof kZeros;
    Write(kZeros, n);
    bytes -= n;
  }
}

void AtomicFile::Commit() {
  if (committed_) return;
  Flush();
  if (::fsync(fd_) != 0) Fail("cannot fsync '{}': {}", temp_path_, std::strerror(errno));
  if (::close(fd_) != 0) {
    fd_ = -1;
    Fail("cannot close '{}': {}", temp_path_, std::strerror(errno));
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    Fail("cannot rename '{}' to '{}': {}", temp_path_, path_, std::strerror(errno));
  }
  committed_ = true;
  // Make the rename itself durable; failing to fsync a folder (some file systems refuse) is not fatal.
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(path_).parent_path().empty() ? fs::path(".") : fs::path(path_).parent_path();
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace mixq
