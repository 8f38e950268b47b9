// Internal to the ggml quantizers: ggml's rounding and per-block scale searches, shared by ggml_quant.cc
// (legacy and IQ4 types) and ggml_quant_k.cc (k-quants). Not a public API: include ggml_quant.h instead.
//
// Each search is ggml's function of the same name (ggml-quants.c) with its float operations kept in the
// same order and association — e.g. `w * x * l` is `(w * x) * float(l)` and every sum runs in index order —
// because a different order changes the last bit of a scale and then, now and then, a whole block.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace mixq::ggml {

// A block whose largest magnitude is below this is stored as all zeros (ggml's GROUP_MAX_EPS).
inline constexpr float kGroupMaxEps = 1e-15f;

// ggml's nearest_int: adding 1.5 * 2^23 pushes the fraction out of the float, so the low mantissa bits
// hold the value rounded half to even. ggml only asserts |f| <= 2^22 - 1; this version saturates beyond
// that (and maps NaN to 0), which changes nothing in range but keeps degenerate blocks (denormal scales
// whose reciprocal overflows) from producing arbitrary codes.
inline int NearestInt(float f) {
  constexpr float kLimit = 4194303.f;
  if (!(std::fabs(f) <= kLimit)) return std::isnan(f) ? 0 : (f > 0 ? 4194303 : -4194303);
  const float shifted = f + 12582912.f;
  uint32_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  return static_cast<int>(bits & 0x007fffffu) - 0x00400000;
}

// float -> integer in [lo, hi] for ggml's `(int8_t)(v)` truncating casts, which are only defined while v
// is in range: clamping first gives the same result for every in-range v, and NaN maps to lo.
inline int TruncateClamped(float v, int lo, int hi) {
  if (!(v > static_cast<float>(lo))) return lo;
  if (v >= static_cast<float>(hi)) return hi;
  return static_cast<int>(v);
}

// Symmetric search (ggml's make_qx_quants, rmse_type 1): codes L in [0, 2*nmax) stand for L - nmax;
// tries the scales -max/(nmax + 0.1*is), is = -9..9, and keeps the least-squares scale with the best
// weighted fit. Weights are qw, or x^2 when qw is null. Returns the scale.
float MakeQxQuants(int n, int nmax, const float* x, int8_t* L, const float* qw);

// Symmetric search with per-weight coordinate descent (ggml's make_q3_quants with do_rmse), weights x^2.
float MakeQ3Quants(int n, int nmax, const float* x, int8_t* L);

// Asymmetric scale + min search (ggml's make_qkx2_quants): codes in [0, nmax], value = scale * L - the_min.
float MakeQkx2Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                     uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);

// As MakeQkx2Quants with ggml's make_qkx3_quants changes (weights may be null: x^2; codes clamp before
// rounding); the importance-weighted paths use it.
float MakeQkx3Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                     uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);

// Non-negative values (sub-block scales or mins) to codes in [0, nmax] with one scale (ggml's
// make_qp_quants), weighted by quant_weights.
float MakeQpQuants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights);

// Index of the level of the sorted `values` (n a power of two) nearest to x; ties go to the upper level
// (ggml's best_index_int8: compares 2x with the sum of neighbouring levels, both exact).
inline int BestIndexInt8(int n, const int8_t* values, float x) {
  const float x2 = x + x;
  int index = 0;
  for (int step = n >> 1; step > 0; step >>= 1) {
    const int j = index + step;
    if (x2 >= static_cast<float>(values[j - 1] + values[j])) index = j;
  }
  return index;
}

// The per-type quantizers (n whole blocks; importance null or n weights) that ggml_quant.cc dispatches to.
void QuantizeQ2_K(const float* x, void* dst, int64_t n, const float* importance);
void QuantizeQ3_K(const float* x, void* dst, int64_t n, const float* importance);
void QuantizeQ4_K(const float* x, void* dst, int64_t n, const float* importance);
void QuantizeQ5_K(const float* x, void* dst, int64_t n, const float* importance);
void QuantizeQ6_K(const float* x, void* dst, int64_t n, const float* importance);

// Writes a block at index i of dst by memcpy (dst has no alignment guarantee).
template <typename Block>
void StoreBlock(void* dst, int64_t index, const Block& block) {
  std::memcpy(static_cast<std::byte*>(dst) + static_cast<size_t>(index) * sizeof(Block), &block, sizeof(Block));
}

}  // namespace mixq::ggml
