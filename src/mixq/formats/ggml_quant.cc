// ggml's quantizers for the 32-weight types (Q4_0 ... Q8_0, Q8_1, IQ4_NL), IQ4_XS and Q8_K, and the
// dispatch over all types; the k-quants are in ggml_quant_k.cc, the shared scale searches in
// ggml_quant_search.cc.
//
// Float expressions keep ggml's shapes (`x * id` with id = 1/d precomputed, `(x - min) * id`, `max / -8`)
// because llama.cpp's bytes are the test: a division where ggml multiplies by a reciprocal moves a value
// across a rounding boundary now and then.
#include "mixq/formats/ggml_quant.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "mixq/base/check.h"
#include "mixq/formats/float16.h"
#include "mixq/formats/ggml_quant_search.h"

namespace mixq {
namespace {

using namespace ggml;

// Index and sign of the value of largest magnitude, the first one on ties (ggml's `amax < fabsf(v)`).
float SignedAbsMax(const float* x, int n) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

// roundf into int8 as ggml's `qs[j] = roundf(x)`; in range the clamp changes nothing, and a NaN (0 times
// the infinite reciprocal of a denormal scale) becomes 0 instead of an undefined conversion.
int8_t RoundToInt8(float v) {
  if (std::isnan(v)) return 0;
  return static_cast<int8_t>(std::clamp(std::round(v), -128.0f, 127.0f));
}

// Packs two 16-weight halves of 4-bit codes as the legacy layout wants: weight j in the low nibble of
// byte j, weight j + 16 in its high nibble.
void PackNibbles(const uint8_t* codes, uint8_t* qs) {
  for (int j = 0; j < kQK / 2; ++j) qs[j] = static_cast<uint8_t>((codes[j] & 0x0f) | ((codes[j + kQK / 2] & 0x0f) << 4));
}

// The fifth bits of 32 5-bit codes as Q5's little-endian uint32 qh (bit j = code j's bit 4).
void PackHighBits(const uint8_t* codes, uint8_t qh[4]) {
  uint32_t bits = 0;
  for (int j = 0; j < kQK; ++j) bits |= static_cast<uint32_t>((codes[j] >> 4) & 1u) << j;
  std::memcpy(qh, &bits, sizeof bits);
}

// Mean square of a whole row: the legacy importance paths add it under the square root of each weight's
// own square, so tiny weights keep some weight (ggml's sigma2 = sum x^2 / n_per_row).
float RowSigma2(const float* x, int64_t n) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / static_cast<float>(n);
}

void ImportanceWeights(const float* x, const float* qw, float sigma2, int n, float* weight) {
  for (int j = 0; j < n; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
}

// The codes and scale of one Q4_0 / Q5_0 block (codes 0 .. 2 * half - 1, value = d * (code - half)): ggml's
// importance-weighted search when there are importances, else its plain rule, where the signed extreme
// becomes code 0 (-half * d): the one end of [-half, half - 1] with no partner at +half.
float SymmetricBlockCodes(const float* x, const float* importance, float sigma2, int half, uint8_t* codes) {
  if (importance != nullptr) {
    float weight[kQK];
    int8_t L[kQK];
    ImportanceWeights(x, importance, sigma2, kQK, weight);
    const float d = MakeQxQuants(kQK, half, x, L, weight);
    for (int j = 0; j < kQK; ++j) codes[j] = static_cast<uint8_t>(L[j]);
    return d;
  }
  const float d = SignedAbsMax(x, kQK) / static_cast<float>(-half);
  const float id = d != 0 ? 1.0f / d : 0.0f;
  for (int j = 0; j < kQK; ++j) {
    codes[j] = static_cast<uint8_t>(TruncateClamped(x[j] * id + (static_cast<float>(half) + 0.5f), 0, 2 * half - 1));
  }
  return d;
}

void QuantizeQ4_0(const float* x, void* dst, int64_t n_blocks, const float* importance, float sigma2) {
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK) {
    BlockQ4_0 b{};
    uint8_t codes[kQK];
    b.d = F32ToF16(SymmetricBlockCodes(x, importance ? importance + i * kQK : nullptr, sigma2, 8, codes));
    PackNibbles(codes, b.qs);
    StoreBlock(dst, i, b);
  }
}

void QuantizeQ5_0(const float* x, void* dst, int64_t n_blocks, const float* importance, float sigma2) {
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK) {
    BlockQ5_0 b{};
    uint8_t codes[kQK];
    b.d = F32ToF16(SymmetricBlockCodes(x, importance ? importance + i * kQK : nullptr, sigma2, 16, codes));
    PackNibbles(codes, b.qs);
    PackHighBits(codes, b.qh);
    StoreBlock(dst, i, b);
  }
}

// Q4_1 and Q5_1: min-max grid without importance, make_qkx3_quants' weighted scale + offset with it.
template <typename Block, int kBits>
void QuantizeQx_1(const float* x, void* dst, int64_t n_blocks, const float* importance, float sigma2) {
  constexpr int kNmax = (1 << kBits) - 1;
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK) {
    Block b{};
    uint8_t codes[kQK];
    if (importance != nullptr) {
      float weight[kQK];
      uint8_t Laux[kQK];
      float min = 0;
      ImportanceWeights(x, importance + i * kQK, sigma2, kQK, weight);
      const float d = MakeQkx3Quants(kQK, kNmax, x, weight, codes, &min, Laux, -0.9f, 0.05f, 36, false);
      b.d = F32ToF16(d);
      b.m = F32ToF16(-min);
    } else {
      float min = FLT_MAX;
      float max = -FLT_MAX;
      for (int j = 0; j < kQK; ++j) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
      }
      const float d = (max - min) / static_cast<float>(kNmax);
      const float id = d != 0 ? 1.0f / d : 0.0f;
      b.d = F32ToF16(d);
      b.m = F32ToF16(min);
      for (int j = 0; j < kQK; ++j) codes[j] = static_cast<uint8_t>(TruncateClamped((x[j] - min) * id + 0.5f, 0, kNmax));
    }
    PackNibbles(codes, b.qs);
    if constexpr (kBits == 5) PackHighBits(codes, b.qh);
    StoreBlock(dst, i, b);
  }
}

void QuantizeQ8_0(const float* x, void* dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    BlockQ8_0 b{};
    b.d = F32ToF16(d);
    for (int j = 0; j < kQK; ++j) b.qs[j] = RoundToInt8(x[j] * id);
    StoreBlock(dst, i, b);
  }
}

void QuantizeQ8_1(const float* x, void* dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    BlockQ8_1 b{};
    b.d = F32ToF16(d);
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      b.qs[j] = RoundToInt8(x[j] * id);
      sum += b.qs[j];
    }
    // s uses the unrounded d, as ggml's reference does.
    b.s = F32ToF16(static_cast<float>(sum) * d);
    StoreBlock(dst, i, b);
  }
}

void QuantizeQ8_K(const float* x, void* dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK_K) {
    BlockQ8_K b{};
    float amax = 0;
    float max = 0;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax != 0) {
      // -127 rather than -128 keeps every code's negation in int8, which ggml's IQ dot products need.
      const float iscale = -127.f / max;
      for (int j = 0; j < kQK_K; ++j) b.qs[j] = static_cast<int8_t>(std::clamp(NearestInt(iscale * x[j]), -128, 127));
      for (int j = 0; j < kQK_K / 16; ++j) {
        int sum = 0;
        for (int l = 0; l < 16; ++l) sum += b.qs[16 * j + l];
        b.bsums[j] = static_cast<int16_t>(sum);
      }
      b.d = 1 / iscale;
    }
    StoreBlock(dst, i, b);
  }
}

// ggml's quantize_row_iq4_nl_impl for 16 levels, 32-weight blocks and ntry = 7, over one super-block of
// `super_size` weights (32 for IQ4_NL, 256 for IQ4_XS). Each block's scale starts at the one mapping its
// signed extreme to level -127, then 15 nearby scales are tried and the weighted least-squares fit kept;
// IQ4_XS then quantizes the blocks' scales to 6 bits under one F16 super-scale and re-picks the levels.
// Writes d (F16 bits), the packed codes, and for IQ4_XS the 6-bit scales.
void QuantizeIq4Superblock(int super_size, const float* x, const float* qw, uint16_t* dh, uint8_t* qs,
                           uint16_t* scales_h, uint8_t* scales_l) {
  constexpr int kBlock = 32;
  constexpr int kNtry = 7;
  constexpr int kLevels = 16;
  const int8_t* values = kIq4nlValues;
  float sigma2 = 0;
  for (int j = 0; j < super_size; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / static_cast<float>(super_size);

  uint8_t L[kQK_K];
  float scales[kQK_K / kBlock];
  float weight[kBlock];
  const int n_blocks = super_size / kBlock;
  float max_scale = 0;
  float amax_scale = 0;
  for (int ib = 0; ib < n_blocks; ++ib) {
    const float* xb = x + ib * kBlock;
    uint8_t* Lb = L + ib * kBlock;
    if (qw != nullptr) {
      ImportanceWeights(xb, qw + ib * kBlock, sigma2, kBlock, weight);
    } else {
      for (int j = 0; j < kBlock; ++j) weight[j] = xb[j] * xb[j];
    }
    float amax = 0;
    float max = 0;
    for (int j = 0; j < kBlock; ++j) {
      const float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    if (amax < kGroupMaxEps) {
      scales[ib] = 0;
      std::fill(Lb, Lb + kBlock, uint8_t{0});
      continue;
    }
    float d = -max / static_cast<float>(values[0]);
    float id = 1 / d;
    float sumqx = 0;
    float sumq2 = 0;
    for (int j = 0; j < kBlock; ++j) {
      const int l = BestIndexInt8(kLevels, values, id * xb[j]);
      Lb[j] = static_cast<uint8_t>(l);
      const float q = values[l];
      const float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -kNtry; itry <= kNtry; ++itry) {
      id = static_cast<float>(itry + values[0]) / max;
      sumqx = 0;
      sumq2 = 0;
      for (int j = 0; j < kBlock; ++j) {
        const int l = BestIndexInt8(kLevels, values, id * xb[j]);
        const float q = values[l];
        const float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    const float abs_d = std::fabs(d);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = d;
    }
  }

  if (n_blocks > 1) {
    *scales_h = 0;
    const float d = -max_scale / 32;
    *dh = F32ToF16(d);
    const float id = d != 0 ? 1 / d : 0.f;
    for (int ib = 0; ib < n_blocks; ++ib) {
      int l = std::clamp(NearestInt(id * scales[ib]), -32, 31);
      const float dl = d * static_cast<float>(l);
      const float idl = dl != 0 ? 1 / dl : 0.f;
      uint8_t* Lb = L + ib * kBlock;
      const float* xb = x + ib * kBlock;
      for (int j = 0; j < kBlock; ++j) Lb[j] = static_cast<uint8_t>(BestIndexInt8(kLevels, values, idl * xb[j]));
      l += 32;
      const auto low = static_cast<uint8_t>(l & 0xf);
      const auto high = static_cast<uint16_t>(l >> 4);
      if (ib % 2 == 0) {
        scales_l[ib / 2] = low;
      } else {
        scales_l[ib / 2] = static_cast<uint8_t>(scales_l[ib / 2] | (low << 4));
      }
      *scales_h = static_cast<uint16_t>(*scales_h | (high << (2 * ib)));
    }
  } else {
    *dh = F32ToF16(scales[0]);
    const float id = scales[0] != 0 ? 1 / scales[0] : 0;
    for (int j = 0; j < super_size; ++j) L[j] = static_cast<uint8_t>(BestIndexInt8(kLevels, values, id * x[j]));
  }
  for (int i = 0; i < super_size / kQK; ++i) PackNibbles(L + kQK * i, qs + (kQK / 2) * i);
}

void QuantizeIQ4_NL(const float* x, void* dst, int64_t n_blocks, const float* importance) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    BlockIQ4_NL b{};
    uint16_t unused_h = 0;
    QuantizeIq4Superblock(kQK, x + i * kQK, importance ? importance + i * kQK : nullptr, &b.d, b.qs, &unused_h,
                          nullptr);
    StoreBlock(dst, i, b);
  }
}

void QuantizeIQ4_XS(const float* x, void* dst, int64_t n_blocks, const float* importance) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    BlockIQ4_XS b{};
    QuantizeIq4Superblock(kQK_K, x + i * kQK_K, importance ? importance + i * kQK_K : nullptr, &b.d, b.qs,
                          &b.scales_h, b.scales_l);
    StoreBlock(dst, i, b);
  }
}

}  // namespace

bool HasGgmlQuantizer(DType dtype) {
  switch (dtype) {
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ8_0:
    case DType::kQ8_1:
    case DType::kQ2_K:
    case DType::kQ3_K:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
    case DType::kQ8_K:
    case DType::kIQ4_NL:
    case DType::kIQ4_XS:
      return true;
    default:
      return false;
  }
}

void QuantizeRowGgml(DType dtype, const float* src, void* dst, int64_t n, const float* importance) {
  MIXQ_CHECK(HasGgmlQuantizer(dtype));
  const int64_t block_size = Traits(dtype).block_size;
  MIXQ_CHECK_GE(n, 0);
  MIXQ_CHECK_EQ(n % block_size, 0);
  if (n == 0) return;
  const int64_t n_blocks = n / block_size;
  // Only the legacy importance paths normalise by the row; computing it here keeps them one call each.
  const bool legacy = dtype == DType::kQ4_0 || dtype == DType::kQ4_1 || dtype == DType::kQ5_0 ||
                      dtype == DType::kQ5_1;
  const float sigma2 = importance != nullptr && legacy ? RowSigma2(src, n) : 0.0f;
  switch (dtype) {
    case DType::kQ4_0: return QuantizeQ4_0(src, dst, n_blocks, importance, sigma2);
    case DType::kQ4_1: return QuantizeQx_1<BlockQ4_1, 4>(src, dst, n_blocks, importance, sigma2);
    case DType::kQ5_0: return QuantizeQ5_0(src, dst, n_blocks, importance, sigma2);
    case DType::kQ5_1: return QuantizeQx_1<BlockQ5_1, 5>(src, dst, n_blocks, importance, sigma2);
    case DType::kQ8_0: return QuantizeQ8_0(src, dst, n_blocks);
    case DType::kQ8_1: return QuantizeQ8_1(src, dst, n_blocks);
    case DType::kQ8_K: return QuantizeQ8_K(src, dst, n_blocks);
    case DType::kQ2_K: return QuantizeQ2_K(src, dst, n, importance);
    case DType::kQ3_K: return QuantizeQ3_K(src, dst, n, importance);
    case DType::kQ4_K: return QuantizeQ4_K(src, dst, n, importance);
    case DType::kQ5_K: return QuantizeQ5_K(src, dst, n, importance);
    case DType::kQ6_K: return QuantizeQ6_K(src, dst, n, importance);
    case DType::kIQ4_NL: return QuantizeIQ4_NL(src, dst, n_blocks, importance);
    case DType::kIQ4_XS: return QuantizeIQ4_XS(src, dst, n_blocks, importance);
    default: MIXQ_CHECK(false);
  }
}

}  // namespace mixq
