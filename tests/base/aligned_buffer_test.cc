// AlignedBuffer: alignment, zero fill, and the huge-page buffers' 2 MiB start.
#include "mixq/base/aligned_buffer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <utility>

namespace mixq {
namespace {

constexpr uintptr_t kHugePage = uintptr_t{2} << 20;

// Every byte is zero, and writable: a mapping trimmed one page short would fault here.
void ExpectZeroAndWritable(AlignedBuffer& buffer) {
  for (size_t i = 0; i < buffer.size(); ++i) {
    ASSERT_EQ(buffer.data()[i], std::byte{0}) << "byte " << i << " of " << buffer.size();
    buffer.data()[i] = std::byte{0x5a};
  }
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
