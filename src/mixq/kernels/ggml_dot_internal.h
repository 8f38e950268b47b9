// Declarations shared by ggml_dot.cc (table, scalar references), ggml_dot_avx2.cc (AVX2 kernels),
// ggml_dot_avx512.cc (AVX-512 VNNI kernels) and the tests that force one instruction-set level.
#pragma once

#include <cstddef>
#include <cstdint>

#include "mixq/kernels/quant_kernel.h"
#include "mixq/tensor/dtype.h"

namespace mixq::ggml_dot {

// One line per kernel: (weights, activations, n, group) -> dot, and (x, dst, n, group) quantizers.
#define MIXQ_GGML_DOT_DECLARE(suffix)                                                       \
  void QuantizeQ8_0##suffix(const float* x, void* dst, int64_t n, int64_t group);           \
  void QuantizeQ8_1##suffix(const float* x, void* dst, int64_t n, int64_t group);           \
  void QuantizeQ8_K##suffix(const float* x, void* dst, int64_t n, int64_t group);           \
  float DotQ8_0##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ4_0##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ4_1##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ5_0##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ5_1##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotIQ4_NL##suffix(const void* w, const void* a, int64_t n, int64_t group);          \
  float DotQ2_K##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ3_K##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ4_K##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ5_K##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ6_K##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotIQ4_XS##suffix(const void* w, const void* a, int64_t n, int64_t group);

MIXQ_GGML_DOT_DECLARE(Ref)
// Defined only on x86-64 builds; callable only where CpuHasAvx2() is true.
MIXQ_GGML_DOT_DECLARE(Avx2)

#undef MIXQ_GGML_DOT_DECLARE

// The AVX2 `dot_rows` (QuantKernel::dot_rows) of the 32-weight types: several rows and tokens sharing
// each activation block and weight block. Defined only on x86-64 builds; callable where CpuHasAvx2().
#define MIXQ_GGML_DOT_DECLARE_ROWS_AVX2(type)                                                         \
  void DotRows##type##Avx2(const void* w, size_t row_bytes, int64_t n_rows, const void* a,           \
                           size_t act_bytes, int64_t n_tokens, int64_t n, int64_t group, float* out,  \
                           int64_t out_stride);
MIXQ_GGML_DOT_DECLARE_ROWS_AVX2(Q8_0)
MIXQ_GGML_DOT_DECLARE_ROWS_AVX2(Q4_0)
MIXQ_GGML_DOT_DECLARE_ROWS_AVX2(Q4_1)
MIXQ_GGML_DOT_DECLARE_ROWS_AVX2(Q5_0)
MIXQ_GGML_DOT_DECLARE_ROWS_AVX2(Q5_1)
MIXQ_GGML_DOT_DECLARE_ROWS_AVX2(IQ4_NL)
// K-quants: prefill only (tokens share each unpacked super-block; one token is `dot`).
MIXQ_GGML_DOT_DECLARE_ROWS_AVX2(Q4_K)
MIXQ_GGML_DOT_DECLARE_ROWS_AVX2(Q6_K)
#undef MIXQ_GGML_DOT_DECLARE_ROWS_AVX2

// The AVX-512 VNNI kernels of the 32-weight types (the k-quants keep their AVX2 kernels at that level):
// `dot` of one row, and `dot_rows` (QuantKernel::dot_rows) over several rows and tokens sharing each
// activation block and weight block. Defined only on x86-64 builds; callable only where CpuHasAvx512Vnni() is true.
#define MIXQ_GGML_DOT_DECLARE_ROWS(type)                                                               \
  float Dot##type##Avx512(const void* w, const void* a, int64_t n, int64_t group);                     \
  void DotRows##type##Avx512(const void* w, size_t row_bytes, int64_t n_rows, const void* a,           \
                             size_t act_bytes, int64_t n_tokens, int64_t n, int64_t group, float* out,  \
                             int64_t out_stride);
MIXQ_GGML_DOT_DECLARE_ROWS(Q8_0)
MIXQ_GGML_DOT_DECLARE_ROWS(Q4_0)
MIXQ_GGML_DOT_DECLARE_ROWS(Q4_1)
MIXQ_GGML_DOT_DECLARE_ROWS(Q5_0)
MIXQ_GGML_DOT_DECLARE_ROWS(Q5_1)
MIXQ_GGML_DOT_DECLARE_ROWS(IQ4_NL)
#undef MIXQ_GGML_DOT_DECLARE_ROWS

// Q4_0 rows interleaved 8 at a time (QuantKernel::interleaved): block b of a group holds the 8 rows'
// scales, then their codes as four 32-byte runs (interleaved_rows.h). A Q4_0 byte k < 16 holds codes k and
// k + 16, so run j's bytes of a row are its qs[4j..4j+3] as they are.
struct BlockQ4_0x8 {
  uint16_t d[8];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ4_0x8) == 8 * 18);

// Q4_1, Q5_0 and Q5_1 as Q4_0: the 8 rows' d (and offsets m), then the low 4 bits of their codes as four
// nibble runs and, for the 5-bit types, the fifth bits as one 32-byte vector laid out as BlockQ5_Kx8's.
struct BlockQ4_1x8 {
  uint16_t d[8];
  uint16_t m[8];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ4_1x8) == 8 * 20);
struct BlockQ5_0x8 {
  uint16_t d[8];
  uint8_t qs[160];
};
static_assert(sizeof(BlockQ5_0x8) == 8 * 22);
struct BlockQ5_1x8 {
  uint16_t d[8];
  uint16_t m[8];
  uint8_t qs[160];
};
static_assert(sizeof(BlockQ5_1x8) == 8 * 24);

// IQ4_NL uses BlockQ4_0x8 as it is (the same block layout; its codes index kIq4nlValues). IQ4_XS: per
// super-block the 8 rows' d, each sub-block's 8 scales unpacked to signed bytes (scale - 32; 16 bytes more
// than the 8 rows), then each sub-block's 32 code indices of 8 rows as four nibble runs.
struct BlockIQ4_XSx8 {
  uint16_t d[8];
  int8_t scales[8][8];
  uint8_t qs[8][128];
};
static_assert(sizeof(BlockIQ4_XSx8) == 8 * 136 + 16);

// Q8_0 likewise: block b of a group holds the 8 rows' scales, then their codes as eight 32-byte runs.
struct BlockQ8_0x8 {
  uint16_t d[8];
  int8_t qs[256];
};
static_assert(sizeof(BlockQ8_0x8) == 8 * 34);

// Q4_K: 32 bytes more than its 8 rows per super-block, for scales and mins unpacked to bytes (a
// `vpmaddwd` operand each, no 6-bit unpacking per row in the loop): the 8 rows' d and dmin; sub-block s's
// 8 scales; the mins of sub-blocks 2p and 2p + 1 paired per row (row r at 2r, 2r + 1); each sub-block's
// 32 codes of 8 rows as four nibble runs.
struct BlockQ4_Kx8 {
  uint16_t d[8];
  uint16_t dmin[8];
  uint8_t scales[8][8];
  uint8_t mins[4][16];
  uint8_t qs[8][128];
};
static_assert(sizeof(BlockQ4_Kx8) == 8 * 144 + 32);

// Q5_K: Q4_K's groups with each sub-block's 32 codes of 8 rows as 160 bytes: the low 4 bits as four nibble
// runs, then the fifth bits as one 32-byte vector whose byte 4r + i holds at bit 2j run j's low-nibble
// code's and at bit 2j + 1 its high-nibble code's (one shift and mask puts each at bit 4).
struct BlockQ5_Kx8 {
  uint16_t d[8];
  uint16_t dmin[8];
  uint8_t scales[8][8];
  uint8_t mins[4][16];
  uint8_t qs[8][160];
};
static_assert(sizeof(BlockQ5_Kx8) == 8 * 176 + 32);

// Q6_K: per super-block the 8 rows' d; each sub-block of 32's scales paired per row (row r's scale for
// its codes 0..15 at 2r, for 16..31 at 2r + 1); then per sub-block 192 bytes: the low 4 bits of its 32
// codes of 8 rows as four nibble runs, then the high 2 bits as two 32-byte vectors. Byte 4r + i of
// vector v holds, from bit 0 up in pairs, the high bits of run 2v's low-nibble code, its high-nibble
// code, then run 2v + 1's two: one mask or shift and mask puts each pair at bits 4-5, beside its nibble.
struct BlockQ6_Kx8 {
  uint16_t d[8];
  int8_t scales[8][16];
  uint8_t qs[8][192];
};
static_assert(sizeof(BlockQ6_Kx8) == 8 * 210);

// Q2_K: per super-block the 8 rows' d and dmin; each 16-code sub-block's scale/min bytes of the 8 rows as
// the file has them (scale in the low nibble, min in the high), sub-block k's at scales_mins[k][r]; then
// per block of 32 codes (sub-blocks 2t and 2t + 1) two 32-byte crumb runs laid out as Q3_K's below.
// Exactly the 8 rows' bytes.
struct BlockQ2_Kx8 {
  uint16_t d[8];
  uint16_t dmin[8];
  uint8_t scales_mins[16][8];
  uint8_t qs[8][64];
};
static_assert(sizeof(BlockQ2_Kx8) == 8 * 84);

// Q3_K: per super-block the 8 rows' d; each 16-code sub-block's scales (scale - 32, signed) of the 8 rows;
// then per block of 32 codes (sub-blocks 2t and 2t + 1) 96 bytes holding each code as u = q + 4 (0..7),
// 3 bits as in the file: two 32-byte "crumb runs", byte 4r + i of run j holding at bits 2k..2k+1 the low 2
// bits of row r's code 16j + 4k + i, then 32 bytes of third bits, byte 4r + i holding at bit s that of row
// r's code 4s + i. One shift and mask of a run gives codes 4s..4s+3 of the 8 rows (s = 4j + k) as the
// nibble runs do; one shift and mask of the third bits puts theirs at bit 2. 32 bytes more than the 8 rows
// per super-block (the scales unpacked to bytes).
struct BlockQ3_Kx8 {
  uint16_t d[8];
  int8_t scales[16][8];
  uint8_t qs[8][96];
};
static_assert(sizeof(BlockQ3_Kx8) == 8 * 110 + 32);

bool InterleaveAcceptsAll(int64_t n, int64_t group);
void InterleaveQ4_0(const void* rows, size_t row_bytes, int64_t n, int64_t group, void* dst);
void ExtractRowQ4_0(const void* src, int lane, int64_t n, int64_t group, void* row);
// Defined only on x86-64 builds; callable where CpuHasAvx2().
void UnpackRowsQ4_0(const void* src, int64_t n, int64_t group, int8_t* const codes[8], float* const d[8],
                    float* const m[8]);
void UnpackRowsQ8_0(const void* src, int64_t n, int64_t group, int8_t* const codes[8], float* const d[8],
                    float* const m[8]);
void UnpackRowsQ4_K(const void* src, int64_t n, int64_t group, int8_t* const codes[8], float* const d[8],
                    float* const m[8]);
void DotGroupsQ4_0Avx2(const void* groups, size_t group_bytes, int64_t n_groups, const void* a, size_t act_bytes,
                       int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride);
void InterleaveQ8_0(const void* rows, size_t row_bytes, int64_t n, int64_t group, void* dst);
void ExtractRowQ8_0(const void* src, int lane, int64_t n, int64_t group, void* row);
void InterleaveQ4_K(const void* rows, size_t row_bytes, int64_t n, int64_t group, void* dst);
void ExtractRowQ4_K(const void* src, int lane, int64_t n, int64_t group, void* row);
void DotGroupsQ4_KAvx2(const void* groups, size_t group_bytes, int64_t n_groups, const void* a, size_t act_bytes,
                       int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride);
// Q4_1, Q5_0, Q5_1 (BlockLegacyx8: BlockQ4_1x8, BlockQ5_0x8, BlockQ5_1x8; Block: BlockQ4_1, ...).
template <typename BlockLegacyx8, typename Block>
void InterleaveLegacy(const void* rows, size_t row_bytes, int64_t n, int64_t group, void* dst);
template <typename BlockLegacyx8, typename Block>
void ExtractRowLegacy(const void* src, int lane, int64_t n, int64_t group, void* row);
template <typename BlockLegacyx8>
void UnpackRowsLegacy(const void* src, int64_t n, int64_t group, int8_t* const codes[8], float* const d[8],
                      float* const m[8]);
void DotGroupsQ4_1Avx2(const void* groups, size_t group_bytes, int64_t n_groups, const void* a, size_t act_bytes,
                       int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride);
void DotGroupsQ5_0Avx2(const void* groups, size_t group_bytes, int64_t n_groups, const void* a, size_t act_bytes,
                       int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride);
void DotGroupsQ5_1Avx2(const void* groups, size_t group_bytes, int64_t n_groups, const void* a, size_t act_bytes,
                       int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride);
void UnpackRowsIQ4_NL(const void* src, int64_t n, int64_t group, int8_t* const codes[8], float* const d[8],
                      float* const m[8]);
void DotGroupsIQ4_NLAvx2(const void* groups, size_t group_bytes, int64_t n_groups, const void* a,
                         size_t act_bytes, int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride);
void InterleaveIQ4_XS(const void* rows, size_t row_bytes, int64_t n, int64_t group, void* dst);
void ExtractRowIQ4_XS(const void* src, int lane, int64_t n, int64_t group, void* row);
void UnpackRowsIQ4_XS(const void* src, int64_t n, int64_t group, int8_t* const codes[8], float* const d[8],
                      float* const m[8]);
void DotGroupsIQ4_NLVnni(const void* groups, size_t group_bytes, int64_t n_groups, const void* a,
                         size_t act_bytes, int64_t n_tokens, int64_t n, int64_t group, float* out,
                         int64_t out_stride);
void DotGroupsQ8_0Vnni(const void* groups, size_t group_bytes, int64_t n_groups, const void* a, size_t act_bytes,
                       int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride);
void DotGroupsQ4_0Vnni(const void* groups, size_t group_bytes, int64_t n_groups, const void* a, size_t act_bytes,
                       int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride);
void DotGroupsIQ4_XSVnni(const void* groups, size_t group_bytes, int64_t n_groups, const void* a,
                         size_t act_bytes, int64_t n_tokens, int64_t n, int64_t group, float* out,
                         int64_t out_stride);
void DotGroupsIQ4_XSAvx2(const void* groups, size_t group_bytes, int64_t n_groups, const void* a,
                         size_t act_bytes, int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride);
void InterleaveQ5_K(const void* rows, size_t row_bytes, int64_t n, int64_t group, void* dst);
void ExtractRowQ5_K(const void* src, int lane, int64_t n, int64_t group, void* row);
void UnpackRowsQ5_K(const void* src, int64_t n, int64_t group, int8_t* const codes[8], float* const d[8],
                    float* const m[8]);
void DotGroupsQ5_KAvx2(const void* groups, size_t group_bytes, int64_t n_groups, const void* a, size_t act_bytes,
                       int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride);
void InterleaveQ6_K(const void* rows, size_t row_bytes, int64_t n, int64_t group, void* dst);
void ExtractRowQ6_K(const void* src, int lane, int64_t n, int64_t group, void* row);
void UnpackRowsQ6_K(const void* src, int64_t n, int64_t group, int8_t* const codes[8], float* const d[8],
                    float* const m[8]);
void DotGroupsQ6_KAvx2(const void* groups, size_t group_bytes, int64_t n_groups, const void* a, size_t act_bytes,
                       int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride);
void InterleaveQ2_K(const void* rows, size_t row_bytes, int64_t n, int64_t group, void* dst);
void ExtractRowQ2_K(const void* src, int lane, int64_t n, int64_t group, void* row);
void UnpackRowsQ2_K(const void* src, int64_t n, int64_t group, int8_t* const codes[8], float* const d[8],
                    float* const m[8]);
void DotGroupsQ2_KAvx2(const void* groups, size_t group_bytes, int64_t n_groups, const void* a, size_t act_bytes,
                       int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride);
void InterleaveQ3_K(const void* rows, size_t row_bytes, int64_t n, int64_t group, void* dst);
void ExtractRowQ3_K(const void* src, int lane, int64_t n, int64_t group, void* row);
void UnpackRowsQ3_K(const void* src, int64_t n, int64_t group, int8_t* const codes[8], float* const d[8],
                    float* const m[8]);
void DotGroupsQ3_KAvx2(const void* groups, size_t group_bytes, int64_t n_groups, const void* a, size_t act_bytes,
                       int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride);
void DotGroupsQ8_0Avx2(const void* groups, size_t group_bytes, int64_t n_groups, const void* a, size_t act_bytes,
                       int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride);

// InterleavedRows::unpack_panel of each layout above (AVX2; defined only on x86-64 builds).
#define MIXQ_GGML_DECLARE_UNPACK_PANEL(name) \
  void name(const void* src, int64_t n, int64_t group, int bias, uint8_t* panel);
MIXQ_GGML_DECLARE_UNPACK_PANEL(UnpackPanelQ4_0Avx2)
MIXQ_GGML_DECLARE_UNPACK_PANEL(UnpackPanelQ8_0Avx2)
MIXQ_GGML_DECLARE_UNPACK_PANEL(UnpackPanelIQ4_NLAvx2)
MIXQ_GGML_DECLARE_UNPACK_PANEL(UnpackPanelIQ4_XSAvx2)
MIXQ_GGML_DECLARE_UNPACK_PANEL(UnpackPanelQ4_KAvx2)
MIXQ_GGML_DECLARE_UNPACK_PANEL(UnpackPanelQ5_KAvx2)
MIXQ_GGML_DECLARE_UNPACK_PANEL(UnpackPanelQ6_KAvx2)
MIXQ_GGML_DECLARE_UNPACK_PANEL(UnpackPanelQ3_KAvx2)
MIXQ_GGML_DECLARE_UNPACK_PANEL(UnpackPanelQ2_KAvx2)
MIXQ_GGML_DECLARE_UNPACK_PANEL(UnpackPanelQ4_1Avx2)
MIXQ_GGML_DECLARE_UNPACK_PANEL(UnpackPanelQ5_0Avx2)
MIXQ_GGML_DECLARE_UNPACK_PANEL(UnpackPanelQ5_1Avx2)
#undef MIXQ_GGML_DECLARE_UNPACK_PANEL

// Which of these kernels this CPU runs: CpuHasAvx2() / CpuHasAvx512Vnni() in cpu_features.h.

// F16 -> F32 by table (256 KiB, built once, exact: built from F16ToF32), as ggml does: one load per
// block scale instead of a move to a vector register and vcvtph2ps.
const float* HalfTable();

// The instruction-set levels of the kernel table, lowest first. GgmlQuantKernel picks the highest this
// CPU has; tests force each one to keep every path checked on a CPU that has several.
enum class Isa { kScalar, kAvx2, kAvx512 };

// The kernels of ggml weight type `dtype` at level `isa`, or nullptr if the type has no kernels or this
// CPU lacks the level. At kAvx512 the types without AVX-512 kernels get their AVX2 ones (isa() says so).
const QuantKernel* GgmlQuantKernelAt(DType dtype, Isa isa);

}  // namespace mixq::ggml_dot
