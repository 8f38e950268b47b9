// A read-only memory map of a whole file: weights are used in place, never read into a second copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace mixq {

class MappedFile {
 public:
  // Maps `path`; throws mixq::Error naming the file if it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  ~MappedFile();

  const std::string& path() const { return path_; }
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  // Whether [p, p + n) lies in the mapping.
  bool contains(const std::byte* p, size_t n) const { return p >= data_ && n <= size_ && p - data_ <= static_cast<std::ptrdiff_t>(size_ - n); }
  // Drops this process's pages wholly inside [p, p + n) (they stay in the page cache and fault back in
  // if read again): for a range whose contents now live in a copy.
  void Release(const std::byte* p, size_t n) const;

 private:
  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace mixq
