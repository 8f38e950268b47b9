// Integer dot-product kernels for mixq's INT weight formats (INT2..INT8, symmetric or asymmetric, any
// group size): the QuantKernel MatMul drives, with its activation layout, scalar references and AVX2 paths.
//
// Activation layout (one quantized activation row of n values, for weight rows grouped by `group`):
//   Each weight group (group 0 or >= n: the whole row) is cut into blocks of 32 values starting at the
//   group's start; a group's last block is shorter when 32 does not divide the group length. The row is
//   the sequence of IntActivationBlock structs, group after group, block after block, then one float per
//   group (no other header):
//     float   scale   d = max|a| / 127 over the block's values (0 for an all-zero block)
//     int32   sum     sum of the block's codes (for the zero-point term)
//     int8    q[32]   round-half-to-even(a / d) clamped to [-127, 127]; positions past a short block's end
//                     are 0, so a kernel may always multiply all 32 bytes
//   40 bytes per block, little-endian, no alignment beyond 4 bytes is promised; then
//     float   G_k     sum over group k's blocks, in order, of float(scale * float(sum)) accumulated in float
//                     (IntActivationGroupSums): the zero-point term of a whole group, z * G_k, for kernels
//                     that take it once per group rather than once per block.
//
// Dot: with weight w_i = s_w * (c_i - z) and activation a_i ~ d * q_i, one block contributes
//   s_w * d * sum_i (c_i - z) * q_i = s_w * d * (sum_i c_i q_i - z * sum),
// which the scalar reference and the VNNI path compute exactly in 32-bit integers per block (|.| < 2^24),
// then scale and sum in float; the AVX2 path sums s_w * d * sum_i c_i q_i over a group's blocks and
// subtracts s_w * z * G_k once per group (int_dot_avx2.cc). The AVX2 path unpacks 32 codes of any bit width into bytes (2, 4 and 8 bits with dedicated shuffles),
// multiplies with _mm256_maddubs_epi16 (codes unsigned, activations signed; 8-bit codes are first made
// signed, c - 128, and multiplied with the sign trick so no pair sum saturates) and _mm256_madd_epi16.
#pragma once

#include <cstddef>
#include <cstdint>

#include "mixq/kernels/interleaved_rows.h"
#include "mixq/kernels/quant_kernel.h"
#include "mixq/tensor/dtype.h"

namespace mixq {

constexpr int64_t kIntActivationBlockSize = 32;

struct IntActivationBlock {
  float scale;
  int32_t sum;
  int8_t q[kIntActivationBlockSize];
};
static_assert(sizeof(IntActivationBlock) == 40, "the activation layout promises 40-byte blocks");

// The kernels of a mixq INT type (all 14: kInt2..kInt8 and kInt2Sym..kInt8Sym), or nullptr for any other.
const QuantKernel* IntQuantKernel(DType dtype);

// Blocks, groups and bytes of one activation row of n values for weights grouped by `group` (0: whole row).
int64_t IntActivationBlockCount(int64_t n, int64_t group);
int64_t IntActivationGroupCount(int64_t n, int64_t group);
size_t IntActivationBytes(int64_t n, int64_t group);

// Writes the group sums G_k after the blocks of an activation row whose blocks are already written. Both
// quantizers (scalar and AVX2) call this one function, so their bytes agree to the bit.
void WriteIntActivationGroupSums(void* activation, int64_t n, int64_t group);

// Scalar reference quantization of one block of len (1..32) values into `block` (the rest zeroed).
void QuantizeIntActivationBlockRef(const float* x, int64_t len, IntActivationBlock* block);

// INT2 to INT8 rows interleaved 8 at a time (QuantKernel::interleaved, wherever AVX2 runs) for
// rows whose groups are whole 32-code blocks (group % 32 == 0 and n % group == 0; group 0 = the row). A
// group of 8 rows (IntInterleavedGroupBytes: 8 * row_bytes for INT4 and INT8, a little more for
// INT2/3/5/6/7):
//   scales  n_groups x 8 F16: group k's scale of row r at 16 k + 2 r
//   zeros   asymmetric only: INT4 n_groups x 4 bytes, group k's zero-point of row r in nibble r (LSB first)
//           of the little-endian uint32 at 4 k, so one variable shift spreads 8 rows' zero-points to lanes;
//           INT2/3/5/6/7/8 n_groups x 8 bytes, row r's at 8 k + r
//   codes   block after block (group after group): INT2 64 bytes each, interleaved_rows.h's two crumb
//           runs; INT3 96 (the crumb runs, then 32 bytes of third bits); INT4 128, the four nibble
//           runs; INT5 160 (the runs with each code's low 4 bits, then 32 bytes of fifth bits), INT6 192
//           (the runs, then 64 bytes of bit pairs), INT7 224 (INT6's, then 32 bytes of bit 6 laid out as
//           the fifth bits), all as interleaved_rows.h says; INT8 256,
//           eight byte runs of c - 128 (run j: codes 4j..4j+3 of each row)
//   zero padding up to the group's size (the rows' zero-point padding nibbles)
// bits is 2 to 8.
bool IntInterleaveAccepts(int64_t n, int64_t group);
// Bytes of one 32-code block of 8 rows in that layout, and of one weight group's 8 zero-points.
constexpr size_t IntInterleavedBlockBytes(int bits) {
  return bits == 8   ? interleaved::kByteRunBytes
         : bits == 2 ? interleaved::kCrumbRunBytes
         : bits == 3 ? interleaved::kCrumbRunBytes + 32
         : bits == 7 ? interleaved::kBlockRunBytes + interleaved::HighBitsBytes<7>()
         : bits == 6 ? interleaved::kBlockRunBytes + interleaved::HighBitsBytes<6>()
         : bits == 5 ? interleaved::kBlockRunBytes + interleaved::HighBitsBytes<5>()
                     : interleaved::kBlockRunBytes;
}
constexpr size_t IntInterleavedZeroBytes(int bits) { return bits == 4 ? 4 : 8; }
// Bytes of one group of 8 rows in that layout.
size_t IntInterleavedGroupBytes(int64_t n, int64_t group, int bits, bool symmetric);
void IntInterleave(const void* rows, size_t row_bytes, int64_t n, int64_t group, int bits, bool symmetric,
                   void* dst);
void IntExtractRow(const void* src, int lane, int64_t n, int64_t group, int bits, bool symmetric, void* row);
// What the packed GEMM's blocks take off a stored code c (PackedGemmFormat::code_bias): 2^(bits - 1), the
// zero-point, for symmetric groups; 128 for asymmetric INT8 (whose offset m then absorbs 128 - z); else 0.
constexpr int IntUnpackBias(int bits, bool symmetric) { return symmetric ? 1 << (bits - 1) : (bits == 8 ? 128 : 0); }
// InterleavedRows::unpack_rows of that layout, codes less `bias` (IntUnpackBias).
void IntUnpackRows(const void* src, int64_t n, int64_t group, int bits, bool symmetric, int bias,
                   int8_t* const codes[8], float* const d[8], float* const m[8]);

// Whether this CPU runs the AVX2 paths (AVX2, FMA and F16C; checked once).
bool IntDotHasAvx2();

}  // namespace mixq
