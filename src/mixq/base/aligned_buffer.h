// An owning, 64-byte aligned, zero-initialised byte buffer for tensors and scratch space.
#pragma once

#include <cstddef>
#include <utility>

namespace mixq {

// Large buffers (>= 1 MiB) come from anonymous mmap, so their zero pages cost no memory until written:
// a KV cache sized for a long context holds only the positions actually used.
class AlignedBuffer {
 public:
  static constexpr size_t kAlignment = 64;

  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes) { Resize(bytes); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        bytes_(std::exchange(other.bytes_, 0)),
        mapped_(std::exchange(other.mapped_, false)) {}
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
    std::swap(mapped_, other.mapped_);
    return *this;
  }
  ~AlignedBuffer() { Release(); }

  // How the pages of a large buffer are asked for. kHuge starts the buffer on a 2 MiB boundary and advises
  // transparent huge pages (honoured where the kernel's THP mode is `madvise` or `always`): for data
  // streamed whole, such as weights read once per token, where 4 KiB pages cost a TLB miss every 4 KiB and
  // stop the hardware prefetchers at every page. Only whole aligned 2 MiB pieces come huge, so a buffer's
  // last partial piece stays on small pages: put many streamed tensors in one buffer rather than one each.
  // Not for sparse data (a KV cache), where a touched byte would commit 2 MiB.
  enum class Pages { kNormal, kHuge };

  // Discards the contents; the new bytes are zero. Throws std::bad_alloc when memory runs out.
  void Resize(size_t bytes, Pages pages = Pages::kNormal);

  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  size_t size() const { return bytes_; }
  template <typename T>
  T* as() { return reinterpret_cast<T*>(data_); }
  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(data_); }

 private:
  void Release();

  std::byte* data_ = nullptr;
  size_t bytes_ = 0;
  bool mapped_ = false;
};

}  // namespace mixq
