// Writing a file so that readers see either the old file or the complete new one, never a partial one.
#pragma once

#include <cstddef>
#include <string>

namespace mixq {

// Bytes go to a temporary file in the target's folder (so the rename cannot cross file systems); Commit
// fsyncs it and renames it over `path`. If Commit is never reached (an error, an exception), the
// destructor removes the temporary file and `path` is left untouched.
class AtomicFile {
 public:
  // Creates the temporary file; throws mixq::Error naming `path` if it cannot.
  explicit AtomicFile(std::string path);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  // Appends bytes; throws mixq::Error naming `path` on a write error (disk full, ...).
  void Write(const void* data, size_t bytes);
  // Appends `bytes` zero bytes.
  void WriteZeros(size_t bytes);
  // Flushes, fsyncs and renames over `path`; throws mixq::Error if any step fails.
  void Commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }
  size_t bytes_written() const { return bytes_written_; }

 private:
  void Flush();
  void WriteAll(const char* data, size_t bytes);

  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
  size_t bytes_written_ = 0;
  std::string buffer_;  // batches small writes (headers, padding) into large write(2) calls
};

}  // namespace mixq
