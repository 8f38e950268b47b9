// Aligned, zero-initialised buffers: malloc for small ones, lazily committed anonymous mmap for large.
#include "mixq/base/aligned_buffer.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>

namespace mixq {
namespace {
constexpr size_t kMmapThresholdBytes = size_t{1} << 20;
}  // namespace

void AlignedBuffer::Resize(size_t bytes, Pages pages) {
  Release();
  if (bytes == 0) return;
  if (bytes >= kMmapThresholdBytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = static_cast<std::byte*>(p);  // page-aligned and zero-filled on first touch
    // Advice only (before the first touch, so the pages come huge): refused, it leaves 4 KiB pages.
    if (pages == Pages::kHuge) madvise(p, bytes, MADV_HUGEPAGE);
    mapped_ = true;
  } else {
    const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    data_ = static_cast<std::byte*>(std::aligned_alloc(kAlignment, rounded));
    if (data_ == nullptr) throw std::bad_alloc();
    std::memset(data_, 0, rounded);
    mapped_ = false;
  }
  bytes_ = bytes;
}

void AlignedBuffer::Release() {
  if (data_ == nullptr) return;
  if (mapped_) {
    munmap(data_, bytes_);
  } else {
    std::free(data_);
  }
  data_ = nullptr;
  bytes_ = 0;
  mapped_ = false;
}

}  // namespace mixq
