// The integer kernels of one quantized weight format: how MatMul quantizes activations for it, and the
// dot product of a stored weight row with a quantized activation row. MatMul (matmul_quant.cc) drives
// them over rows and tokens; each format supplies a fast path for this CPU and its scalar reference.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "mixq/tensor/dtype.h"

namespace mixq {

// How a format's rows and activation rows read as blocks for the packed prefill GEMM (packed_gemm.h).
struct PackedGemmFormat {
  int width;    // values per block: 32, or 16 for the k-quants with 16-value sub-blocks (Q2_K, Q3_K, Q6_K)
  bool offset;  // whether a block's offset m can be nonzero (Q4_1, Q5_1, k-quant mins, asymmetric INT)
  // The codes unpack_row writes plus code_bias lie in [0, 2^code_bits): Q4_0's [-8, 7] is 4 bits with bias 8,
  // Q8_0's [-127, 127] 8 bits with bias 128. AVX2's maddubs saturates int16 pairs of unsigned x signed
  // bytes, so its micro-kernel stores codes + code_bias and sums as many steps in int16 as 2^code_bits
  // allows (packed_gemm_avx2.cc); 8-bit codes take a sign trick instead.
  int code_bits;
  int code_bias;
  // Blocks of a row of n values with this group size (short blocks at group ends are zero-padded).
  int64_t (*block_count)(int64_t n, int64_t group);
  // A stored weight row as blocks: w_i = d[b] * codes[b * width + j] + m[b] (codes zero-padded).
  void (*unpack_row)(const void* w_row, int64_t n, int64_t group, int8_t* codes, float* d, float* m);
  // A row in this kernel's activation layout (from quantize_activation) as the same blocks: the codes
  // (zero-padded), the block's float scale, the sum of its codes, and the factor of the weight offset m
  // as `dot` takes it (scale * sum; Q8_1's stored F16 s, so that offsets round as in ggml).
  void (*expand_activation)(const void* activation, int64_t n, int64_t group, int8_t* q, float* scale,
                            int32_t* sum, float* msum);
  // Consecutive blocks that share one activation scale: 1, or 256 / width for the Q8_K activations of the
  // k-quants and IQ4_XS. With a span, the micro-kernels sum a span's blocks unscaled and multiply by the
  // token's scale once per span: one float multiply per block and (row group, token) less, of the three
  // float instructions next to the block's 8 integer ones on the same two vector pipes (Zen 4).
  int scale_span = 1;
};

// Weight rows repacked 8 at a time for decode (TensorView::interleaved, made at load by
// InterleaveForDecode): a group holds its 8 rows' blocks side by side in one stream, so one register of
// integer sums covers 8 rows, their 8 scales convert in one instruction, and no sum is reduced across
// lanes.
struct InterleavedRows {
  static constexpr int kRows = 8;
  // Whether rows of n weights grouped by `group` have this layout (INT4: whole 32-code blocks per group).
  bool (*accepts)(int64_t n, int64_t group);
  // Bytes of one group of 8 rows: 8 * row_bytes, or more where the layout unpacks scales (Q4_K).
  size_t (*group_bytes)(int64_t n, int64_t group);
  // 8 stored rows (row_bytes apart) of n weights -> one group.
  void (*interleave)(const void* rows, size_t row_bytes, int64_t n, int64_t group, void* dst);
  // Row `lane` (0..7) of a group back in its stored layout: the layout's inverse, which the tests hold
  // interleave to (the matrix kernels read groups only, through unpack_rows and dot_groups).
  void (*extract_row)(const void* src, int lane, int64_t n, int64_t group, void* row);
  // A group's 8 rows as the packed GEMM's blocks, exactly as the kernel's PackedGemmFormat::unpack_row
  // gives each of them (row r into codes[r], d[r], m[r]), in one pass over the group.
  void (*unpack_rows)(const void* src, int64_t n, int64_t group, int8_t* const codes[8], float* const d[8],
                      float* const m[8]);
  // out[t * out_stride + 8 g + i] = `dot`(row i of group g, activation row t) for g < n_groups and
  // t < n_tokens (activation rows as quantize_activation writes them, activation_bytes apart).
  void (*dot_groups)(const void* groups, size_t group_bytes, int64_t n_groups, const void* activations,
                     size_t activation_bytes, int64_t n_tokens, int64_t n, int64_t group, float* out,
                     int64_t out_stride);
  // Optional (nullptr: the packed GEMM lays out what unpack_rows gives, row by row): the same group written
  // straight as the packed GEMM's panel blocks (packed_gemm_internal.h), codes + `bias`, for the layouts
  // whose runs already hold 4 codes of each of the 8 rows side by side, as the panel does.
  void (*unpack_panel)(const void* src, int64_t n, int64_t group, int bias, uint8_t* panel) = nullptr;
};

struct QuantKernel {
  DType weight_type;
  // Bytes of one quantized activation row of n values, for weight rows of n values grouped by `group`
  // (the group size matters only to mixq INT formats, whose activation blocks follow the weight groups).
  size_t (*activation_bytes)(int64_t n, int64_t group);
  // x[0..n) into that activation layout; _ref is the scalar reference.
  void (*quantize_activation)(const float* x, void* dst, int64_t n, int64_t group);
  void (*quantize_activation_ref)(const float* x, void* dst, int64_t n, int64_t group);
  // sum_i W[i] * A[i] of one stored weight row (n weights) with one quantized activation row.
  float (*dot)(const void* w_row, const void* activation, int64_t n, int64_t group);
  float (*dot_ref)(const void* w_row, const void* activation, int64_t n, int64_t group);
  // Which instruction set `dot` uses on this CPU ("AVX2", "scalar"), for tests and benchmarks.
  const char* (*isa)();
  // Optional (nullptr: MatMul calls `dot` per row and token): out[t * out_stride + r] =
  // `dot`(w + r * row_bytes, activations + t * activation_bytes) for r < n_rows and t < n_tokens, in one
  // call that can share each activation block among rows and each weight block among tokens.
  void (*dot_rows)(const void* w, size_t row_bytes, int64_t n_rows, const void* activations,
                   size_t activation_bytes, int64_t n_tokens, int64_t n, int64_t group, float* out,
                   int64_t out_stride) = nullptr;
  // Optional (nullptr: no packed GEMM): set only at the levels whose CPU runs the packed micro-kernel.
  const PackedGemmFormat* packed = nullptr;
  // Optional (nullptr: decode reads the stored rows): set only at the levels whose dot_groups is faster.
  const InterleavedRows* interleaved = nullptr;
};

// The kernels for weights stored in `dtype`, or nullptr if it has none (the float types use MatMul's
// own Highway kernels).
const QuantKernel* FindQuantKernel(DType dtype);

// The names of every type FindQuantKernel has kernels for ("Q4_0, Q8_0, ..."), for error messages.
std::string QuantKernelTypeNames();

}  // namespace mixq

namespace mixq {

struct TensorView;

// y[t * w.rows() + r] = W[r, :] . x[t, :] for weights in a quantized format: activations are quantized
// once per call into the kernel's layout, then every (row, token) pair is one `dot`, rows split across
// threads. MatMul calls this; it is exposed so tests and benchmarks can drive a kernel directly.
void MatMulQuantized(const QuantKernel& kernel, const TensorView& w, const float* x, int64_t n_tokens, float* y);

// The calling thread's buffer for one call's quantized activations, grown to at least `bytes` (never
// shrunk): shared by the quantized MatMul paths, which never nest.
std::byte* ActivationScratch(size_t bytes);

}  // namespace mixq
