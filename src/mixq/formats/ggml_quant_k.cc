// ggml's k-quant quantizers (Q2_K ... Q6_K): per 256-weight super-block, a scale search per sub-block,
// then the sub-block scales themselves quantized under one F16 super-scale, then every weight re-rounded
// against the scales as stored (so codes fit the scales the dequantizer will actually see).
//
// Without importance each follows quantize_row_<type>_ref; with it, quantize_row_<type>_impl, which
// weights the searches by importance * sqrt(sigma2 + x^2) and picks the sub-block scales with
// make_qp_quants instead of rounding them against the largest.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "mixq/formats/float16.h"
#include "mixq/formats/ggml_blocks.h"
#include "mixq/formats/ggml_quant_search.h"

namespace mixq::ggml {
namespace {

// Packs 256 2-bit codes as Q2_K/Q3_K lay them out: in each 128-weight half, weight 32k + l is bits 2k..2k+1
// of byte l of that half's 32 bytes.
void Pack2BitCodes(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQK_K; j += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
    }
  }
}

// Sum of squares of a super-block; the importance paths derive sigma2 from it.
float SumSquares(const float* x, int n) {
  float sum_x2 = 0;
  for (int j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2;
}

// ---------------------------------------------------------------- Q2_K

void Q2_KSuperblock(const float* x, const float* qw, BlockQ2_K& b) {
  uint8_t L[kQK_K];
  uint8_t Laux[16];
  float weights[16];
  float mins[kQK_K / 16];
  float scales[kQK_K / 16];
  if (qw == nullptr) {
    // 2-bit codes are too coarse for an L2 fit to be stable: ggml minimises absolute error (use_mad),
    // weighted by |x|.
    float max_scale = 0;
    float max_min = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = MakeQkx2Quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    constexpr float kQ4Scale = 15.f;
    if (max_scale > 0) {
      const float iscale = kQ4Scale / max_scale;
      for (int j = 0; j < kQK_K / 16; ++j) b.scales[j] = static_cast<uint8_t>(NearestInt(iscale * scales[j]));
      b.d = F32ToF16(max_scale / kQ4Scale);
    } else {
      std::fill(b.scales, b.scales + kQK_K / 16, uint8_t{0});
      b.d = F32ToF16(0.f);
    }
    if (max_min > 0) {
      const float iscale = kQ4Scale / max_min;
      for (int j = 0; j < kQK_K / 16; ++j) {
        b.scales[j] = static_cast<uint8_t>(b.scales[j] | (NearestInt(iscale * mins[j]) << 4));
      }
      b.dmin = F32ToF16(max_min / kQ4Scale);
    } else {
      b.dmin = F32ToF16(0.f);
    }
  } else {
    float sw[kQK_K / 16] = {};
    uint8_t Ls[kQK_K / 16];
    uint8_t Lm[kQK_K / 16];
    const float sigma2 = SumSquares(x, kQK_K) / kQK_K;
    for (int j = 0; j < kQK_K / 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      for (int l = 0; l < 16; ++l) sw[j] += weights[l];
      scales[j] = MakeQkx3Quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
    }
    const float dm = MakeQpQuants(kQK_K / 16, 15, scales, Ls, sw);
    const float mm = MakeQpQuants(kQK_K / 16, 15, mins, Lm, sw);
    b.d = F32ToF16(dm);
    b.dmin = F32ToF16(mm);
    for (int j = 0; j < kQK_K / 16; ++j) b.scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
  }
  const float d_all = F16ToF32(b.d);
  const float dmin_all = F16ToF32(b.dmin);
  for (int j = 0; j < kQK_K / 16; ++j) {
    const float d = d_all * static_cast<float>(b.scales[j] & 0xF);
    if (d == 0) continue;
    const float dm = dmin_all * static_cast<float>(b.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      L[16 * j + ii] = static_cast<uint8_t>(std::clamp(NearestInt((x[16 * j + ii] + dm) / d), 0, 3));
    }
  }
  Pack2BitCodes(L, b.qs);
}

// ---------------------------------------------------------------- Q3_K

// Q3_K's 6-bit scale s (0..63, stored biased by 32) into the split 12-byte layout of ggml_blocks.h.
void PutQ3Scale(uint8_t* scales, int j, int l) {
  if (j < 8) {
    scales[j] = static_cast<uint8_t>(l & 0xF);
  } else {
    scales[j - 8] = static_cast<uint8_t>(scales[j - 8] | ((l & 0xF) << 4));
  }
  scales[j % 4 + 8] = static_cast<uint8_t>(scales[j % 4 + 8] | ((l >> 4) << (2 * (j / 4))));
}

int GetQ3Scale(const uint8_t* scales, int j) {
  const int low = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  return (low | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

void Q3_KSuperblock(const float* x, const float* qw, BlockQ3_K& b) {
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  std::memset(b.scales, 0, sizeof b.scales);
  if (qw == nullptr) {
    float max_scale = 0;
    float amax = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
      scales[j] = MakeQ3Quants(16, 4, x + 16 * j, L + 16 * j);
      const float scale = std::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    if (max_scale != 0) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < kQK_K / 16; ++j) {
        // ggml stores nearest_int into an int8 before clamping; in range (|iscale * scale| <= 32) it is the same.
        const int l = std::clamp(static_cast<int>(static_cast<int8_t>(NearestInt(iscale * scales[j]))), -32, 31) + 32;
        PutQ3Scale(b.scales, j, l);
      }
      b.d = F32ToF16(1 / iscale);
    } else {
      b.d = F32ToF16(0.f);
    }
  } else {
    float weight[16];
    float sw[kQK_K / 16];
    int8_t Ls[kQK_K / 16];
    const float sigma2 = 2 * SumSquares(x, kQK_K) / kQK_K;
    for (int j = 0; j < kQK_K / 16; ++j) {
      for (int l = 0; l < 16; ++l) weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 16; ++l) sumw += weight[l];
      sw[j] = sumw;
      scales[j] = MakeQxQuants(16, 4, x + 16 * j, L + 16 * j, weight);
    }
    const float d_block = MakeQxQuants(kQK_K / 16, 32, scales, Ls, sw);
    for (int j = 0; j < kQK_K / 16; ++j) PutQ3Scale(b.scales, j, Ls[j]);
    b.d = F32ToF16(d_block);
  }
  const float d_all = F16ToF32(b.d);
  for (int j = 0; j < kQK_K / 16; ++j) {
    const float d = d_all * static_cast<float>(GetQ3Scale(b.scales, j));
    if (d == 0) continue;
    for (int ii = 0; ii < 16; ++ii) {
      L[16 * j + ii] = static_cast<int8_t>(std::clamp(NearestInt(x[16 * j + ii] / d), -4, 3) + 4);
    }
  }
  // The third bit of weight j goes to bit j / 32 of hmask[j % 32]; the low two bits pack as Q2_K's.
  std::memset(b.hmask, 0, sizeof b.hmask);
  uint8_t low[kQK_K];
  for (int j = 0; j < kQK_K; ++j) {
    int l = L[j];
    if (l > 3) {
      b.hmask[j % 32] = static_cast<uint8_t>(b.hmask[j % 32] | (1 << (j / 32)));
      l -= 4;
    }
    low[j] = static_cast<uint8_t>(l);
  }
  Pack2BitCodes(low, b.qs);
}

// ---------------------------------------------------------------- Q4_K / Q5_K

// The shared body of Q4_K (kNmax 15) and Q5_K (kNmax 31): fills d, dmin, scales and the 256 codes L.
template <int kNmax>
void QkKScalesAndCodes(const float* x, const float* qw, uint16_t& d_bits, uint16_t& dmin_bits, uint8_t* packed,
                       uint8_t* L) {
  uint8_t Laux[32];
  float weights[32];
  float mins[kQK_K / 32];
  float scales[kQK_K / 32];
  if (qw == nullptr) {
    // Q4_K and Q5_K's reference searches differ only in their grid of trial scales.
    constexpr float kRmin = kNmax == 15 ? -1.f : -0.5f;
    constexpr int kNstep = kNmax == 15 ? 20 : 15;
    float max_scale = 0;
    float max_min = 0;
    for (int j = 0; j < kQK_K / 32; ++j) {
      // Weight |x| plus the sub-block's RMS: large weights matter more, small ones still count.
      const float av_x = std::sqrt(SumSquares(x + 32 * j, 32) / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = MakeQkx2Quants(32, kNmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, kRmin, 0.1f, kNstep,
                                 false);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < kQK_K / 32; ++j) {
      // ggml truncates nearest_int to uint8 and then caps at 63.
      const auto ls = static_cast<uint8_t>(std::min(63, static_cast<int>(static_cast<uint8_t>(NearestInt(inv_scale * scales[j])))));
      const auto lm = static_cast<uint8_t>(std::min(63, static_cast<int>(static_cast<uint8_t>(NearestInt(inv_min * mins[j])))));
      PutScaleMinK4(packed, j, ls, lm);
    }
    d_bits = F32ToF16(max_scale / 63.f);
    dmin_bits = F32ToF16(max_min / 63.f);
  } else {
    uint8_t Ls[kQK_K / 32];
    uint8_t Lm[kQK_K / 32];
    float sw[kQK_K / 32];
    const float sigma2 = 2 * SumSquares(x, kQK_K) / kQK_K;
    for (int j = 0; j < kQK_K / 32; ++j) {
      for (int l = 0; l < 32; ++l) weights[l] = qw[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 32; ++l) sumw += weights[l];
      sw[j] = sumw;
      scales[j] = MakeQkx3Quants(32, kNmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
    }
    const float d_block = MakeQpQuants(kQK_K / 32, 63, scales, Ls, sw);
    const float m_block = MakeQpQuants(kQK_K / 32, 63, mins, Lm, sw);
    for (int j = 0; j < kQK_K / 32; ++j) {
      // make_qp_quants caps codes at 63, but a negative code wraps in its uint8; ggml's Q5_K caps the
      // wrapped value again and its Q4_K does not, so this does the same.
      const uint8_t ls = kNmax == 31 ? std::min<uint8_t>(63, Ls[j]) : Ls[j];
      const uint8_t lm = kNmax == 31 ? std::min<uint8_t>(63, Lm[j]) : Lm[j];
      PutScaleMinK4(packed, j, ls, lm);
    }
    d_bits = F32ToF16(d_block);
    dmin_bits = F32ToF16(m_block);
  }
  const float d_all = F16ToF32(d_bits);
  const float dmin_all = F16ToF32(dmin_bits);
  for (int j = 0; j < kQK_K / 32; ++j) {
    uint8_t sc;
    uint8_t m;
    GetScaleMinK4(j, packed, &sc, &m);
    const float d = d_all * static_cast<float>(sc);
    if (d == 0) continue;
    const float dm = dmin_all * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii) {
      L[32 * j + ii] = static_cast<uint8_t>(std::clamp(NearestInt((x[32 * j + ii] + dm) / d), 0, kNmax));
    }
  }
}

void Q4_KSuperblock(const float* x, const float* qw, BlockQ4_K& b) {
  uint8_t L[kQK_K];
  QkKScalesAndCodes<15>(x, qw, b.d, b.dmin, b.scales, L);
  for (int j = 0; j < kQK_K; j += 64) {
    for (int l = 0; l < 32; ++l) b.qs[j / 2 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
  }
}

void Q5_KSuperblock(const float* x, const float* qw, BlockQ5_K& b) {
  uint8_t L[kQK_K];
  QkKScalesAndCodes<31>(x, qw, b.d, b.dmin, b.scales, L);
  std::memset(b.qh, 0, sizeof b.qh);
  for (int c = 0; c < kQK_K / 64; ++c) {
    for (int l = 0; l < 32; ++l) {
      const int l1 = L[64 * c + l];
      const int l2 = L[64 * c + l + 32];
      b.qh[l] = static_cast<uint8_t>(b.qh[l] | ((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1)));
      b.qs[32 * c + l] = static_cast<uint8_t>((l1 & 0xF) | ((l2 & 0xF) << 4));
    }
  }
}

// ---------------------------------------------------------------- Q6_K

void Q6_KSuperblock(const float* x, const float* qw, BlockQ6_K& b) {
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  float max_scale = 0;
  float max_abs_scale = 0;
  for (int ib = 0; ib < kQK_K / 16; ++ib) {
    // The importance path uses the raw importances as the fit's weights (no sigma2 term, unlike the others).
    scales[ib] = MakeQxQuants(16, 32, x + 16 * ib, L + 16 * ib, qw ? qw + 16 * ib : nullptr);
    const float abs_scale = std::fabs(scales[ib]);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scales[ib];
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(&b, 0, sizeof b);
    return;
  }
  const float iscale = -128.f / max_scale;
  b.d = F32ToF16(1 / iscale);
  for (int ib = 0; ib < kQK_K / 16; ++ib) {
    b.scales[ib] = static_cast<int8_t>(std::min(127, NearestInt(iscale * scales[ib])));
  }
  const float d_all = F16ToF32(b.d);
  for (int j = 0; j < kQK_K / 16; ++j) {
    const float d = d_all * static_cast<float>(b.scales[j]);
    if (d == 0) continue;
    for (int ii = 0; ii < 16; ++ii) {
      L[16 * j + ii] = static_cast<int8_t>(std::clamp(NearestInt(x[16 * j + ii] / d), -32, 31) + 32);
    }
  }
  for (int h = 0; h < 2; ++h) {
    const int8_t* Lh = L + 128 * h;
    uint8_t* ql = b.ql + 64 * h;
    uint8_t* qh = b.qh + 32 * h;
    for (int l = 0; l < 32; ++l) {
      ql[l] = static_cast<uint8_t>((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
      ql[l + 32] = static_cast<uint8_t>((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
      qh[l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                   ((Lh[l + 96] >> 4) << 6));
    }
  }
}

template <typename Block>
void QuantizeSuperblocks(const float* x, void* dst, int64_t n, const float* importance,
                         void (*superblock)(const float*, const float*, Block&)) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    Block b{};
    superblock(x + i * kQK_K, importance ? importance + i * kQK_K : nullptr, b);
    StoreBlock(dst, i, b);
  }
}

}  // namespace

void QuantizeQ2_K(const float* x, void* dst, int64_t n, const float* importance) {
  QuantizeSuperblocks<BlockQ2_K>(x, dst, n, importance, Q2_KSuperblock);
}
void QuantizeQ3_K(const float* x, void* dst, int64_t n, const float* importance) {
  QuantizeSuperblocks<BlockQ3_K>(x, dst, n, importance, Q3_KSuperblock);
}
void QuantizeQ4_K(const float* x, void* dst, int64_t n, const float* importance) {
  QuantizeSuperblocks<BlockQ4_K>(x, dst, n, importance, Q4_KSuperblock);
}
void QuantizeQ5_K(const float* x, void* dst, int64_t n, const float* importance) {
  QuantizeSuperblocks<BlockQ5_K>(x, dst, n, importance, Q5_KSuperblock);
}
void QuantizeQ6_K(const float* x, void* dst, int64_t n, const float* importance) {
  QuantizeSuperblocks<BlockQ6_K>(x, dst, n, importance, Q6_KSuperblock);
}

}  // namespace mixq::ggml
