// Round-to-nearest quantization into mixq's integer formats (layout in tensor/int_layout.h) with a scale
// search per group, so that RTN is an honest baseline: the reference quantizer every method is compared to.
//
// Each group (or the whole tensor, per-tensor) gets the scale (and integer zero-point) that minimises its
// squared error -- weighted per input channel when an importance vector is given -- among a grid of
// candidates and their least-squares refits. Candidates are ranked by the error of their codes with the
// scale already rounded to FP16; the best few are then measured exactly as they will be stored (codes
// re-rounded against the FP16 scale), so the stored result is what the search measured.
// docs/int-formats.md describes the search.
#pragma once

#include <cstddef>
#include <cstdint>

#include "mixq/tensor/dtype.h"

namespace mixq {

// Quantizes a row-major [rows, cols] float matrix into the mixq INT `dtype` (rows of RowBytes(dtype, cols,
// group) bytes at dst, which need not be zeroed). `group` weights of a row share a scale (0: the whole row).
// per_tensor: one scale (and zero-point) for the whole tensor, stored in every group of every row (group
// must be 0 then).
// importance: optional [cols] per-input-channel importance (e.g. an imatrix's mean squared activations):
// the scale search minimises sum_i importance[i] * (x_i - deq_i)^2 instead of the plain squared error.
// exclude: optional [rows, cols] mask (nonzero = excluded), the salient weights a dense-and-sparse tensor
// keeps in FP16 (docs/salient.md): an excluded weight takes no part in its group's scale search (weight 0
// and value 0, so it moves neither the sums nor the range) and is stored as its group's zero-point code,
// which dequantizes to exactly 0 (symmetric or asymmetric), so dense + sparse is exactly the sparse value
// there. A group with nothing excluded is searched and written exactly as without a mask.
// Throws mixq::Error for a non-INT dtype, negative sizes, a group with per_tensor, a non-finite weight, or a
// negative or non-finite importance (excluded weights must be finite too: the sparse part stores them).
void QuantizeIntMatrix(DType dtype, const float* src, int64_t rows, int64_t cols, int64_t group, bool per_tensor,
                       std::byte* dst, const float* importance = nullptr, const uint8_t* exclude = nullptr);

// The parameters one group was stored with: weight = scale * (code - zero), with scale already FP16-exact.
struct IntGroupParams {
  float scale = 0.0f;
  int zero = 0;
};

// The scale search for one set of values sharing a scale, exposed for tests: `x[0..n)`, optional
// per-value weights `importance[0..n)` (null: all 1), codes of `bits` bits, symmetric (zero fixed at
// 2^(bits-1)) or asymmetric (integer zero in [0, 2^bits-1]). Finite inputs are an invariant.
// exclude: optional [n] mask; excluded values are left out of the search as QuantizeIntMatrix leaves them.
IntGroupParams SearchIntGroupParams(const float* x, int64_t n, const float* importance, int bits, bool symmetric,
                                    const uint8_t* exclude = nullptr);

// The code RTN stores for x under `params` (clamped to [0, 2^bits-1]); the rounding every INT quantizer
// here uses, so an error measured in the search is the error stored.
int IntCode(float x, const IntGroupParams& params, int bits);

// The instruction set the search's passes run on. Every path does the same float operations in the same
// order (16 lanes, sums reduced every 256 values, no fused multiply-adds), so all give identical bytes;
// the choice only changes the speed. kAuto: the widest this CPU runs (AVX when present).
enum class IntQuantIsa { kAuto, kBaseline, kAvx };
// Selects the path for the whole process (tests and benchmarks compare them); returns false, changing
// nothing, when this CPU cannot run it.
bool SetIntQuantIsa(IntQuantIsa isa);
// The path in use: "avx" or "baseline".
const char* IntQuantIsaName();

}  // namespace mixq
