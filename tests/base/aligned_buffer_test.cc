// AlignedBuffer: alignment, zero fill, and the huge-page buffers' 2 MiB start.
#include "mixq/base/aligned_buffer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <new>
#include <utility>

namespace mixq {
namespace {

constexpr uintptr_t kHugePage = uintptr_t{2} << 20;

// Every byte is zero, and writable: a mapping trimmed one page short would fault here.
void ExpectZeroAndWritable(AlignedBuffer& buffer) {
  std::byte* const end = buffer.data() + buffer.size();
  const std::byte* nonzero = std::find_if(buffer.data(), end, [](std::byte b) { return b != std::byte{0}; });
  EXPECT_EQ(nonzero, end) << "byte " << (nonzero - buffer.data()) << " of " << buffer.size() << " is not zero";
  std::fill(buffer.data(), end, std::byte{0x5a});
  EXPECT_EQ(end[-1], std::byte{0x5a});
}

TEST(AlignedBuffer, SmallAndLargeBuffersAreAlignedAndZero) {
  for (const size_t bytes : {size_t{1}, size_t{100}, size_t{4096}, size_t{1} << 20, (size_t{3} << 20) + 17}) {
    AlignedBuffer buffer(bytes);
    EXPECT_EQ(buffer.size(), bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(buffer.data()) % AlignedBuffer::kAlignment, 0u) << bytes;
    ExpectZeroAndWritable(buffer);
  }
}

// Huge pages back only whole aligned 2 MiB pieces of a mapping, so a huge-page buffer starts on one
// (whatever mmap would have returned); sizes that are not multiples of a page or of 2 MiB included.
TEST(AlignedBuffer, HugePageBuffersStartOnA2MiBBoundary) {
  for (const size_t bytes : {size_t{1} << 20, (size_t{2} << 20) - 1, size_t{2} << 20, (size_t{5} << 20) + 4097}) {
    // Several live at once, so that they are not all handed the same lucky address.
    AlignedBuffer a, b, c;
    a.Resize(bytes, AlignedBuffer::Pages::kHuge);
    b.Resize(bytes + 4096, AlignedBuffer::Pages::kHuge);
    c.Resize(bytes, AlignedBuffer::Pages::kHuge);
    for (AlignedBuffer* buffer : {&a, &b, &c}) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(buffer->data()) % kHugePage, 0u) << buffer->size();
      ExpectZeroAndWritable(*buffer);
    }
  }
}

// A size no machine has (or one that would wrap the huge-page mapping's extra 2 MiB) is std::bad_alloc
// (the CLI reports "out of memory" and exits 1), never a crash or a buffer shorter than asked.
TEST(AlignedBuffer, ImpossibleSizesThrowBadAlloc) {
  for (const AlignedBuffer::Pages pages : {AlignedBuffer::Pages::kNormal, AlignedBuffer::Pages::kHuge}) {
    AlignedBuffer buffer;
    EXPECT_THROW(buffer.Resize(SIZE_MAX - 100, pages), std::bad_alloc);
    EXPECT_THROW(buffer.Resize(size_t{1} << 60, pages), std::bad_alloc);
    EXPECT_EQ(buffer.data(), nullptr);
    EXPECT_EQ(buffer.size(), 0u);
  }
}

TEST(AlignedBuffer, ResizeDiscardsAndMoveTransfers) {
  AlignedBuffer a;
  a.Resize(size_t{3} << 20, AlignedBuffer::Pages::kHuge);
  a.data()[5] = std::byte{1};
  a.Resize(size_t{3} << 20, AlignedBuffer::Pages::kHuge);
  EXPECT_EQ(a.data()[5], std::byte{0});
  std::byte* const data = a.data();
  AlignedBuffer b = std::move(a);
  EXPECT_EQ(b.data(), data);
  EXPECT_EQ(b.size(), size_t{3} << 20);
  EXPECT_EQ(a.data(), nullptr);
  a.Resize(0);
  EXPECT_EQ(a.size(), 0u);
}

}  // namespace
}  // namespace mixq
