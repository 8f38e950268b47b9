// ggml's weight types as QuantKernel rows: the scalar references (the oracles of the SIMD kernels) and
// the table that picks AVX-512 VNNI, AVX2 or scalar once per process.
//
// Semantics follow ggml's ggml_vec_dot_<type>_q8_<x>: integer sums inside a block (or sub-block), one
// float multiply by the product of the weight and activation scales per block, float accumulation. The
// activation quantizers reproduce ggml's quantize_row_q8_0/q8_1/q8_K_ref bit for bit (roundf for Q8_0 and
// Q8_1, round-half-to-even with scale -127/max for Q8_K).
#include "mixq/kernels/ggml_dot.h"

#include "mixq/kernels/cpu_features.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "mixq/base/check.h"
#include "mixq/formats/float16.h"
#include "mixq/kernels/ggml_dot_internal.h"
#include "mixq/kernels/interleaved_rows.h"

namespace mixq {
namespace ggml_dot {

using namespace ggml;

namespace {

template <typename Block>
const Block* Blocks(const void* p) {
  return static_cast<const Block*>(p);
}

int64_t BlockCount(int64_t n, int64_t block) {
  MIXQ_CHECK_GE(n, int64_t{0});
  MIXQ_CHECK_EQ(n % block, int64_t{0});
  return n / block;
}

// Q8_0/Q8_1 block b of x: d = max|x| / 127, q = roundf(x / d) (half away from zero). Returns the
// unrounded d; sum(q) goes to *q_sum.
float QuantizeBlock32(const float* x, int8_t* qs, int* q_sum) {
  float amax = 0.0f;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  int sum = 0;
  for (int j = 0; j < kQK; ++j) {
    qs[j] = static_cast<int8_t>(std::round(x[j] * id));
    sum += qs[j];
  }
  *q_sum = sum;
  return d;
}

// 16 bytes of nibbles as 32 int8 codes minus `offset` (0..15), eight at a time in 64-bit words: the
// byte loop stayed scalar (the compiler unrolled it instead), and this decode runs once per weight per
// packed GEMM call.
void NibbleCodesInt8(const uint8_t qs[kQK / 2], int offset, int8_t* __restrict q) {
  constexpr uint64_t kLow = 0x0f0f0f0f0f0f0f0full, kTop = 0x8080808080808080ull;
  const uint64_t sub = 0x0101010101010101ull * static_cast<uint64_t>(offset);
  for (int h = 0; h < 2; ++h) {
    uint64_t x;
    std::memcpy(&x, qs + 8 * h, sizeof x);
    // Each byte v - offset without borrows between bytes: (v | 0x80) - offset stays >= 0x80 - 15.
    const uint64_t lo = (((x & kLow) | kTop) - sub) ^ kTop;
    const uint64_t hi = ((((x >> 4) & kLow) | kTop) - sub) ^ kTop;
    std::memcpy(q + 8 * h, &lo, sizeof lo);
    std::memcpy(q + kQK / 2 + 8 * h, &hi, sizeof hi);
  }
}

// The 32 weight codes of a legacy block as signed integers (value = code * d (+ m)): as int for the
// reference dots (plain loops, the oracle), as int8 straight into the packed GEMM's rows (UnpackLegacy).
// `q` never aliases the block: without __restrict an int8 store may alias anything, and the loops stayed
// scalar.
template <typename T>
void NibbleCodes(const uint8_t qs[kQK / 2], int offset, T* __restrict q) {
  if constexpr (std::is_same_v<T, int8_t>) {
    NibbleCodesInt8(qs, offset, q);
  } else {
    for (int j = 0; j < kQK / 2; ++j) {
      q[j] = static_cast<T>((qs[j] & 0x0f) - offset);
      q[j + kQK / 2] = static_cast<T>((qs[j] >> 4) - offset);
    }
  }
}

template <typename T>
void CodesQ4_0(const BlockQ4_0& b, T* __restrict q) {
  NibbleCodes<T>(b.qs, 8, q);
}

template <typename T>
void CodesQ4_1(const BlockQ4_1& b, T* __restrict q) {
  NibbleCodes<T>(b.qs, 0, q);
}

uint32_t HighBits(const uint8_t qh[4]) {
  uint32_t bits;
  std::memcpy(&bits, qh, sizeof bits);
  return bits;
}

template <typename Block, typename T>
void Codes5(const Block& b, int offset, T* __restrict q) {
  const uint32_t qh = HighBits(b.qh);
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = static_cast<T>(((b.qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4)) - offset);
    q[j + kQK / 2] = static_cast<T>(((b.qs[j] >> 4) | static_cast<int>(((qh >> (j + kQK / 2)) & 1u) << 4)) - offset);
  }
}

int Dot32(const int q[kQK], const int8_t a[kQK]) {
  int sum = 0;
  for (int j = 0; j < kQK; ++j) sum += q[j] * a[j];
  return sum;
}

// Symmetric legacy types against Q8_0: sum_b d_w * d_a * sum_j q_j a_j.
template <typename Block, void (*kCodes)(const Block&, int*)>
float DotSymmetric32(const void* w, const void* a, int64_t n) {
  const auto* x = Blocks<Block>(w);
  const auto* y = Blocks<BlockQ8_0>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < BlockCount(n, kQK); ++i) {
    int q[kQK];
    kCodes(x[i], q);
    sum += static_cast<float>(Dot32(q, y[i].qs)) * (F16ToF32(x[i].d) * F16ToF32(y[i].d));
  }
  return sum;
}

// Offset legacy types against Q8_1: sum_b d_w * d_a * sum_j q_j a_j + m_w * s_a.
template <typename Block, void (*kCodes)(const Block&, int*)>
float DotOffset32(const void* w, const void* a, int64_t n) {
  const auto* x = Blocks<Block>(w);
  const auto* y = Blocks<BlockQ8_1>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < BlockCount(n, kQK); ++i) {
    int q[kQK];
    kCodes(x[i], q);
    sum += static_cast<float>(Dot32(q, y[i].qs)) * (F16ToF32(x[i].d) * F16ToF32(y[i].d)) +
           F16ToF32(x[i].m) * F16ToF32(y[i].s);
  }
  return sum;
}

template <typename T>
void CodesQ5_0(const BlockQ5_0& b, T* __restrict q) {
  Codes5(b, 16, q);
}
template <typename T>
void CodesQ5_1(const BlockQ5_1& b, T* __restrict q) {
  Codes5(b, 0, q);
}

template <typename T>
void CodesIQ4_NL(const BlockIQ4_NL& b, T* __restrict q) {
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = static_cast<T>(kIq4nlValues[b.qs[j] & 0x0f]);
    q[j + kQK / 2] = static_cast<T>(kIq4nlValues[b.qs[j] >> 4]);
  }
}

template <typename T>
void CodesQ8_0(const BlockQ8_0& b, T* __restrict q) {
  for (int j = 0; j < kQK; ++j) q[j] = static_cast<T>(b.qs[j]);
}

// A k-quant super-block decoded: value_i = d * scale[i / sub] * q_i - dmin * min[i / sub], with the
// sub-block length `sub` 16 or 32 (q already has its -4 / -32 / level lookup applied).
struct KBlock {
  float d = 0.0f;
  float dmin = 0.0f;
  int sub = 16;
  int q[kQK_K];
  int scale[16];
  int min[16] = {};
};

// sum_i W_i * A_i for one decoded super-block and one Q8_K block; mins through the activation's bsums.
float DotKBlock(const KBlock& k, const BlockQ8_K& y) {
  int isum = 0;
  for (int s = 0; s < kQK_K / k.sub; ++s) {
    int sub_sum = 0;
    for (int l = 0; l < k.sub; ++l) sub_sum += k.q[s * k.sub + l] * y.qs[s * k.sub + l];
    isum += k.scale[s] * sub_sum;
  }
  int msum = 0;
  for (int g = 0; g < kQK_K / 16; ++g) msum += k.min[g * 16 / k.sub] * y.bsums[g];
  return (y.d * k.d) * static_cast<float>(isum) - (y.d * k.dmin) * static_cast<float>(msum);
}

// The Q2_K/Q3_K 2-bit layout: the weight of index 128h + 32k + l is bits 2k..2k+1 of qs[32h + l]. All 256
// of a block, as loops that vectorize (per weight, the index arithmetic made repacking a Q3_K model at
// load spend 70% of its time in DecodeQ3_K).
void AllTwoBits(const uint8_t* qs, uint8_t u[kQK_K]) {
  for (int h = 0; h < 2; ++h) {
    for (int part = 0; part < 4; ++part) {
      for (int l = 0; l < 32; ++l) u[128 * h + 32 * part + l] = static_cast<uint8_t>((qs[32 * h + l] >> (2 * part)) & 3);
    }
  }
}
// And the inverse for one weight and a zeroed qs: ors v's low 2 bits in at weight i's place.
void PutTwoBits(uint8_t* qs, int i, int v) {
  qs[32 * (i / 128) + i % 32] |= static_cast<uint8_t>((v & 3) << (2 * ((i % 128) / 32)));
}

void DecodeQ2_K(const BlockQ2_K& b, KBlock* k) {
  k->d = F16ToF32(b.d);
  k->dmin = F16ToF32(b.dmin);
  k->sub = 16;
  uint8_t u[kQK_K];
  AllTwoBits(b.qs, u);
  for (int i = 0; i < kQK_K; ++i) k->q[i] = u[i];
  for (int s = 0; s < 16; ++s) {
    k->scale[s] = b.scales[s] & 0x0f;
    k->min[s] = b.scales[s] >> 4;
  }
}

void DecodeQ3_K(const BlockQ3_K& b, KBlock* k) {
  k->d = F16ToF32(b.d);
  k->sub = 16;
  uint8_t u[kQK_K];
  AllTwoBits(b.qs, u);
  // Weight i = 128h + 32part + l has its high bit at bit 4h + part of hmask[l]; a clear bit means -4.
  for (int h = 0; h < 2; ++h) {
    for (int part = 0; part < 4; ++part) {
      for (int l = 0; l < 32; ++l) {
        const int i = 128 * h + 32 * part + l;
        k->q[i] = u[i] - (((b.hmask[l] >> (4 * h + part)) & 1) ? 0 : 4);
      }
    }
  }
  for (int s = 0; s < 16; ++s) {
    const int low = s < 8 ? (b.scales[s] & 0x0f) : (b.scales[s - 8] >> 4);
    const int high = (b.scales[8 + s % 4] >> (2 * (s / 4))) & 3;
    k->scale[s] = (low | (high << 4)) - 32;
  }
}

void ScaleMinK4(const uint8_t q[kKScaleSize], int s, int* scale, int* min) {
  if (s < 4) {
    *scale = q[s] & 63;
    *min = q[s + 4] & 63;
  } else {
    *scale = (q[s + 4] & 0x0f) | ((q[s - 4] >> 6) << 4);
    *min = (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
  }
}

void DecodeQ4_K(const BlockQ4_K& b, KBlock* k) {
  k->d = F16ToF32(b.d);
  k->dmin = F16ToF32(b.dmin);
  k->sub = 32;
  for (int i = 0; i < kQK_K; ++i) {
    const uint8_t byte = b.qs[32 * (i / 64) + i % 32];
    k->q[i] = (i % 64) < 32 ? (byte & 0x0f) : (byte >> 4);
  }
  for (int s = 0; s < 8; ++s) ScaleMinK4(b.scales, s, &k->scale[s], &k->min[s]);
}

void DecodeQ5_K(const BlockQ5_K& b, KBlock* k) {
  k->d = F16ToF32(b.d);
  k->dmin = F16ToF32(b.dmin);
  k->sub = 32;
  for (int i = 0; i < kQK_K; ++i) {
    const uint8_t byte = b.qs[32 * (i / 64) + i % 32];
    const int low = (i % 64) < 32 ? (byte & 0x0f) : (byte >> 4);
    k->q[i] = low | (((b.qh[i % 32] >> (i / 32)) & 1) << 4);
  }
  for (int s = 0; s < 8; ++s) ScaleMinK4(b.scales, s, &k->scale[s], &k->min[s]);
}

void DecodeQ6_K(const BlockQ6_K& b, KBlock* k) {
  k->d = F16ToF32(b.d);
  k->sub = 16;
  for (int i = 0; i < kQK_K; ++i) {
    const int h = i / 128, part = (i % 128) / 32, l = i % 32;
    const uint8_t low_byte = b.ql[64 * h + l + 32 * (part % 2)];
    const int low = part < 2 ? (low_byte & 0x0f) : (low_byte >> 4);
    const int high = (b.qh[32 * h + l] >> (2 * part)) & 3;
    k->q[i] = (low | (high << 4)) - 32;
  }
  for (int s = 0; s < 16; ++s) k->scale[s] = b.scales[s];
}

void DecodeIQ4_XS(const BlockIQ4_XS& b, KBlock* k) {
  k->d = F16ToF32(b.d);
  k->sub = 32;
  for (int s = 0; s < 8; ++s) {
    const uint8_t* qs = b.qs + 16 * s;
    for (int j = 0; j < 16; ++j) {
      k->q[32 * s + j] = kIq4nlValues[qs[j] & 0x0f];
      k->q[32 * s + j + 16] = kIq4nlValues[qs[j] >> 4];
    }
    k->scale[s] = (((b.scales_l[s / 2] >> (4 * (s % 2))) & 0x0f) | (((b.scales_h >> (2 * s)) & 3) << 4)) - 32;
  }
}

template <typename Block, void (*kDecode)(const Block&, KBlock*)>
float DotK(const void* w, const void* a, int64_t n) {
  const auto* x = Blocks<Block>(w);
  const auto* y = Blocks<BlockQ8_K>(a);
  float sum = 0.0f;
  KBlock k;
  for (int64_t i = 0; i < BlockCount(n, kQK_K); ++i) {
    kDecode(x[i], &k);
    sum += DotKBlock(k, y[i]);
  }
  return sum;
}

// ---- Packed GEMM formats (packed_gemm.h): a row as blocks of 32 (16) values w = d * c + m, and an
// activation row in Q8_0 / Q8_1 / Q8_K as the same blocks. Scalar: this runs once per row per call.

int64_t Blocks32(int64_t n, int64_t) { return BlockCount(n, kQK); }
int64_t Blocks16(int64_t n, int64_t) { return BlockCount(n, 16); }

template <typename Block, void (*kCodes)(const Block&, int8_t*), bool kOffset>
void UnpackLegacy(const void* w, int64_t n, int64_t, int8_t* codes, float* d, float* m) {
  const auto* x = Blocks<Block>(w);
  const float* half = HalfTable();
  const int64_t blocks = BlockCount(n, kQK);
  for (int64_t i = 0; i < blocks; ++i) {
    kCodes(x[i], codes + i * kQK);
    d[i] = half[x[i].d];
    if constexpr (kOffset) {
      m[i] = half[x[i].m];
    } else {
      m[i] = 0.0f;
    }
  }
}

// A k-quant super-block's sub-blocks as blocks: d = d * scale_s, m = -dmin * min_s.
template <typename Block, void (*kDecode)(const Block&, KBlock*)>
void UnpackK(const void* w, int64_t n, int64_t, int8_t* codes, float* d, float* m) {
  const auto* x = Blocks<Block>(w);
  KBlock k;
  for (int64_t i = 0; i < BlockCount(n, kQK_K); ++i) {
    kDecode(x[i], &k);
    for (int j = 0; j < kQK_K; ++j) codes[i * kQK_K + j] = static_cast<int8_t>(k.q[j]);
    const int subs = kQK_K / k.sub;
    for (int s = 0; s < subs; ++s) {
      d[i * subs + s] = k.d * static_cast<float>(k.scale[s]);
      m[i * subs + s] = -k.dmin * static_cast<float>(k.min[s]);
    }
  }
}

// Q4_K and Q6_K (the common k-quants) decoded straight to bytes, in loops the compiler vectorizes; the
// KBlock path above serves the rest. Same values as DecodeQ4_K / DecodeQ6_K (packed_gemm_test checks the
// packed product against the dequantized weights, which DequantizeRow reads independently).
void UnpackQ4_K(const void* w, int64_t n, int64_t, int8_t* codes, float* d, float* m) {
  const auto* x = Blocks<BlockQ4_K>(w);
  for (int64_t i = 0; i < BlockCount(n, kQK_K); ++i) {
    const BlockQ4_K& b = x[i];
    int8_t* __restrict c = codes + i * kQK_K;
    for (int h = 0; h < 4; ++h) {
      for (int l = 0; l < 32; ++l) {
        c[64 * h + l] = static_cast<int8_t>(b.qs[32 * h + l] & 0x0f);
        c[64 * h + 32 + l] = static_cast<int8_t>(b.qs[32 * h + l] >> 4);
      }
    }
    const float dd = F16ToF32(b.d), dmin = F16ToF32(b.dmin);
    for (int s = 0; s < 8; ++s) {
      int scale, min;
      ScaleMinK4(b.scales, s, &scale, &min);
      d[i * 8 + s] = dd * static_cast<float>(scale);
      m[i * 8 + s] = -dmin * static_cast<float>(min);
    }
  }
}

void UnpackQ6_K(const void* w, int64_t n, int64_t, int8_t* codes, float* d, float* m) {
  const auto* x = Blocks<BlockQ6_K>(w);
  for (int64_t i = 0; i < BlockCount(n, kQK_K); ++i) {
    const BlockQ6_K& b = x[i];
    int8_t* __restrict c = codes + i * kQK_K;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b.ql + 64 * h;
      const uint8_t* qh = b.qh + 32 * h;
      int8_t* out = c + 128 * h;
      // The four parts written out: constant shifts let the loop vectorize (a variable one kept it scalar).
      for (int l = 0; l < 32; ++l) {
        out[l] = static_cast<int8_t>(((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32);
        out[32 + l] = static_cast<int8_t>(((ql[32 + l] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
        out[64 + l] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        out[96 + l] = static_cast<int8_t>(((ql[32 + l] >> 4) | ((qh[l] >> 6) << 4)) - 32);
      }
    }
    const float dd = HalfTable()[b.d];
    for (int s = 0; s < 16; ++s) {
      d[i * 16 + s] = dd * static_cast<float>(b.scales[s]);
      m[i * 16 + s] = 0.0f;
    }
  }
}

int32_t SumCodes(const int8_t* q, int len) {
  int32_t sum = 0;
  for (int j = 0; j < len; ++j) sum += q[j];
  return sum;
}

template <typename Block>
void ExpandQ8_32(const void* a, int64_t n, int64_t, int8_t* q, float* scale, int32_t* sum, float* msum) {
  const auto* y = Blocks<Block>(a);
  for (int64_t i = 0; i < BlockCount(n, kQK); ++i) {
    std::memcpy(q + i * kQK, y[i].qs, kQK);
    scale[i] = F16ToF32(y[i].d);
    sum[i] = SumCodes(y[i].qs, kQK);
    if constexpr (std::is_same_v<Block, BlockQ8_1>) {
      msum[i] = F16ToF32(y[i].s);
    } else {
      msum[i] = scale[i] * static_cast<float>(sum[i]);
    }
  }
}

template <int kWidth>
void ExpandQ8_K(const void* a, int64_t n, int64_t, int8_t* q, float* scale, int32_t* sum, float* msum) {
  const auto* y = Blocks<BlockQ8_K>(a);
  constexpr int kSubs = kQK_K / kWidth;
  for (int64_t i = 0; i < BlockCount(n, kQK_K); ++i) {
    std::memcpy(q + i * kQK_K, y[i].qs, kQK_K);
    for (int s = 0; s < kSubs; ++s) {
      const int64_t b = i * kSubs + s;
      scale[b] = y[i].d;
      sum[b] = SumCodes(y[i].qs + s * kWidth, kWidth);
      msum[b] = scale[b] * static_cast<float>(sum[b]);
    }
  }
}

}  // namespace

void QuantizeQ8_0Ref(const float* x, void* dst, int64_t n, int64_t) {
  auto* y = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < BlockCount(n, kQK); ++i, x += kQK) {
    int sum;
    y[i].d = F32ToF16(QuantizeBlock32(x, y[i].qs, &sum));
  }
}

void QuantizeQ8_1Ref(const float* x, void* dst, int64_t n, int64_t) {
  auto* y = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < BlockCount(n, kQK); ++i, x += kQK) {
    int sum;
    const float d = QuantizeBlock32(x, y[i].qs, &sum);
    y[i].d = F32ToF16(d);
    y[i].s = F32ToF16(static_cast<float>(sum) * d);
  }
}

void QuantizeQ8_KRef(const float* x, void* dst, int64_t n, int64_t) {
  auto* y = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < BlockCount(n, kQK_K); ++i, x += kQK_K) {
    // The signed value of largest magnitude, the first one on ties (ggml's strict >).
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK_K; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      // ggml leaves bsums unwritten here; zeros are what they would sum to.
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQK_K; ++j) {
      // nearbyint rounds half to even in the default rounding mode, as ggml's nearest_int does.
      const int v = static_cast<int>(std::nearbyint(iscale * x[j]));
      y[i].qs[j] = static_cast<int8_t>(std::min(127, v));
    }
    for (int g = 0; g < kQK_K / 16; ++g) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += y[i].qs[16 * g + l];
      y[i].bsums[g] = static_cast<int16_t>(sum);
    }
    y[i].d = 1.0f / iscale;
  }
}

float DotQ8_0Ref(const void* w, const void* a, int64_t n, int64_t) {
  return DotSymmetric32<BlockQ8_0, CodesQ8_0<int>>(w, a, n);
}
float DotQ4_0Ref(const void* w, const void* a, int64_t n, int64_t) {
  return DotSymmetric32<BlockQ4_0, CodesQ4_0<int>>(w, a, n);
}
float DotQ5_0Ref(const void* w, const void* a, int64_t n, int64_t) {
  return DotSymmetric32<BlockQ5_0, CodesQ5_0<int>>(w, a, n);
}
float DotIQ4_NLRef(const void* w, const void* a, int64_t n, int64_t) {
  return DotSymmetric32<BlockIQ4_NL, CodesIQ4_NL<int>>(w, a, n);
}
float DotQ4_1Ref(const void* w, const void* a, int64_t n, int64_t) {
  return DotOffset32<BlockQ4_1, CodesQ4_1<int>>(w, a, n);
}
float DotQ5_1Ref(const void* w, const void* a, int64_t n, int64_t) {
  return DotOffset32<BlockQ5_1, CodesQ5_1<int>>(w, a, n);
}
float DotQ2_KRef(const void* w, const void* a, int64_t n, int64_t) { return DotK<BlockQ2_K, DecodeQ2_K>(w, a, n); }
float DotQ3_KRef(const void* w, const void* a, int64_t n, int64_t) { return DotK<BlockQ3_K, DecodeQ3_K>(w, a, n); }
float DotQ4_KRef(const void* w, const void* a, int64_t n, int64_t) { return DotK<BlockQ4_K, DecodeQ4_K>(w, a, n); }
float DotQ5_KRef(const void* w, const void* a, int64_t n, int64_t) { return DotK<BlockQ5_K, DecodeQ5_K>(w, a, n); }
float DotQ6_KRef(const void* w, const void* a, int64_t n, int64_t) { return DotK<BlockQ6_K, DecodeQ6_K>(w, a, n); }
float DotIQ4_XSRef(const void* w, const void* a, int64_t n, int64_t) {
  return DotK<BlockIQ4_XS, DecodeIQ4_XS>(w, a, n);
}

bool InterleaveAcceptsAll(int64_t, int64_t) { return true; }

void InterleaveQ4_0(const void* rows, size_t row_bytes, int64_t n, int64_t, void* dst) {
  const auto* src = static_cast<const uint8_t*>(rows);
  auto* out = static_cast<BlockQ4_0x8*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) {
    for (int r = 0; r < 8; ++r) {
      BlockQ4_0 block;
      std::memcpy(&block, src + r * row_bytes + b * sizeof(BlockQ4_0), sizeof block);
      out[b].d[r] = block.d;
      // Q4_0's byte k < 16 holds codes k and k + 16: run j's 4 bytes of the row are its qs[4j..4j+3].
      for (int j = 0; j < 4; ++j) std::memcpy(out[b].qs + 32 * j + 4 * r, block.qs + 4 * j, 4);
    }
  }
}

void ExtractRowQ4_0(const void* src, int lane, int64_t n, int64_t, void* row) {
  const auto* in = static_cast<const BlockQ4_0x8*>(src);
  auto* out = static_cast<uint8_t*>(row);
  for (int64_t b = 0; b < n / kQK; ++b) {
    BlockQ4_0 block;
    block.d = in[b].d[lane];
    for (int j = 0; j < 4; ++j) std::memcpy(block.qs + 4 * j, in[b].qs + 32 * j + 4 * lane, 4);
    std::memcpy(out + b * sizeof(BlockQ4_0), &block, sizeof block);
  }
}

void InterleaveQ8_0(const void* rows, size_t row_bytes, int64_t n, int64_t, void* dst) {
  const auto* src = static_cast<const uint8_t*>(rows);
  auto* out = static_cast<BlockQ8_0x8*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) {
    uint8_t codes[8][32];
    for (int r = 0; r < 8; ++r) {
      BlockQ8_0 block;
      std::memcpy(&block, src + r * row_bytes + b * sizeof(BlockQ8_0), sizeof block);
      out[b].d[r] = block.d;
      std::memcpy(codes[r], block.qs, sizeof block.qs);
    }
    interleaved::PutRunBlock<8>(codes, reinterpret_cast<uint8_t*>(out[b].qs));
  }
}

void ExtractRowQ8_0(const void* src, int lane, int64_t n, int64_t, void* row) {
  const auto* in = static_cast<const BlockQ8_0x8*>(src);
  auto* out = static_cast<uint8_t*>(row);
  for (int64_t b = 0; b < n / kQK; ++b) {
    BlockQ8_0 block;
    block.d = in[b].d[lane];
    interleaved::GetByteRuns(in[b].qs, lane, block.qs);
    std::memcpy(out + b * sizeof(BlockQ8_0), &block, sizeof block);
  }
}

namespace {

// The d, dmin, scales and mins of Q4_K and Q5_K super-blocks (the same 12-byte packing) as their
// interleaved groups keep them: row r of BlockKx8 (BlockQ4_Kx8 or BlockQ5_Kx8).
template <typename BlockKx8>
void PutKScalesMins(uint16_t d, uint16_t dmin, const uint8_t* scales12, int r, BlockKx8& out) {
  out.d[r] = d;
  out.dmin[r] = dmin;
  for (int s = 0; s < 8; ++s) {
    uint8_t scale, min;
    GetScaleMinK4(s, scales12, &scale, &min);
    out.scales[s][r] = scale;
    out.mins[s / 2][2 * r + s % 2] = min;
  }
}
template <typename BlockKx8>
void GetKScalesMins(const BlockKx8& in, int r, uint16_t* d, uint16_t* dmin, uint8_t* scales12) {
  *d = in.d[r];
  *dmin = in.dmin[r];
  for (int s = 0; s < 8; ++s) PutScaleMinK4(scales12, s, in.scales[s][r], in.mins[s / 2][2 * r + s % 2]);
}
// d = d * scale_s, m = -dmin * min_s per sub-block of 32, as UnpackQ4_K and UnpackK<BlockQ5_K> give them.
template <typename BlockKx8>
void UnpackKScalesMins(const BlockKx8& in, int64_t b, float* const d[8], float* const m[8]) {
  for (int r = 0; r < 8; ++r) {
    const float dd = F16ToF32(in.d[r]), dmin = F16ToF32(in.dmin[r]);
    for (int s = 0; s < 8; ++s) {
      d[r][b * 8 + s] = dd * static_cast<float>(in.scales[s][r]);
      m[r][b * 8 + s] = -dmin * static_cast<float>(in.mins[s / 2][2 * r + s % 2]);
    }
  }
}

// Sub-block s's 32 codes in a Q4_K / Q5_K block, and back: the low 4 bits are the low (even s) or high
// nibbles of the 32 bytes from 32 * (s / 2); Q5_K's fifth bit of code k is bit s of qh[k].
template <typename Block>
void GetKCodes(const Block& block, int s, uint8_t codes[32]) {
  for (int k = 0; k < 32; ++k) {
    codes[k] = (block.qs[32 * (s / 2) + k] >> (4 * (s % 2))) & 0x0f;
    if constexpr (requires { block.qh; }) codes[k] = static_cast<uint8_t>(codes[k] | ((block.qh[k] >> s) & 1) << 4);
  }
}
template <typename Block>
void PutKCodes(const uint8_t codes[32], int s, Block& block) {
  for (int k = 0; k < 32; ++k) {
    block.qs[32 * (s / 2) + k] |= static_cast<uint8_t>((codes[k] & 0x0f) << (4 * (s % 2)));
    if constexpr (requires { block.qh; }) block.qh[k] |= static_cast<uint8_t>(((codes[k] >> 4) & 1) << s);
  }
}

}  // namespace

namespace {

// The 5-bit legacy types' traits for their interleaved groups: whether a block has a fifth bit, an
// offset m, and the code offset (Q5_0's 16; value = d * (code - offset) + m).
template <typename BlockLegacyx8>
struct LegacyTraits;
template <>
struct LegacyTraits<BlockQ4_1x8> {
  static constexpr bool kFifth = false, kMin = true;
  static constexpr int kOffset = 0;
};
template <>
struct LegacyTraits<BlockQ5_0x8> {
  static constexpr bool kFifth = true, kMin = false;
  static constexpr int kOffset = 16;
};
template <>
struct LegacyTraits<BlockQ5_1x8> {
  static constexpr bool kFifth = true, kMin = true;
  static constexpr int kOffset = 0;
};

// A legacy block's 32 codes, unsigned (0..15 or 0..31), and back.
template <typename Block>
void GetLegacyCodes(const Block& b, uint8_t codes[32]) {
  for (int j = 0; j < 16; ++j) {
    codes[j] = b.qs[j] & 0x0f;
    codes[j + 16] = b.qs[j] >> 4;
  }
  if constexpr (requires { b.qh; }) {
    // Fifth bit j is bit j % 8 of qh byte j / 8: 8 codes at a time from a table that spreads a byte's
    // bits to bit 4 of 8 bytes (bit by bit, this loop was most of the time to repack a Q5_0 model).
    static constexpr auto kSpread = [] {
      std::array<uint64_t, 256> table{};
      for (int x = 0; x < 256; ++x) {
        for (int i = 0; i < 8; ++i) table[x] |= static_cast<uint64_t>((x >> i) & 1) << (8 * i + 4);
      }
      return table;
    }();
    for (int c = 0; c < 4; ++c) {
      uint64_t eight = 0;
      for (int i = 0; i < 8; ++i) eight |= static_cast<uint64_t>(codes[8 * c + i]) << (8 * i);
      eight |= kSpread[b.qh[c]];
      for (int i = 0; i < 8; ++i) codes[8 * c + i] = static_cast<uint8_t>(eight >> (8 * i));
    }
  }
}
template <typename Block>
void PutLegacyCodes(const uint8_t codes[32], Block& b) {
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>((codes[j] & 0x0f) | (codes[j + 16] & 0x0f) << 4);
  if constexpr (requires { b.qh; }) {
    uint32_t qh = 0;
    for (int j = 0; j < 32; ++j) qh |= static_cast<uint32_t>(codes[j] >> 4) << j;
    std::memcpy(b.qh, &qh, sizeof qh);
  }
}

// The width of a legacy group's codes in interleaved_rows.h's terms.
template <typename BlockLegacyx8>
constexpr int kLegacyBits = LegacyTraits<BlockLegacyx8>::kFifth ? 5 : 4;

}  // namespace

template <typename BlockLegacyx8, typename Block>
void InterleaveLegacy(const void* rows, size_t row_bytes, int64_t n, int64_t, void* dst) {
  const auto* src = static_cast<const uint8_t*>(rows);
  auto* out = static_cast<BlockLegacyx8*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) {
    uint8_t codes[8][32];
    for (int r = 0; r < 8; ++r) {
      Block block;
      std::memcpy(&block, src + r * row_bytes + b * sizeof(Block), sizeof block);
      out[b].d[r] = block.d;
      if constexpr (LegacyTraits<BlockLegacyx8>::kMin) out[b].m[r] = block.m;
      GetLegacyCodes(block, codes[r]);
    }
    interleaved::PutRunBlock<kLegacyBits<BlockLegacyx8>>(codes, out[b].qs);
  }
}

template <typename BlockLegacyx8, typename Block>
void ExtractRowLegacy(const void* src, int lane, int64_t n, int64_t, void* row) {
  const auto* in = static_cast<const BlockLegacyx8*>(src);
  auto* out = static_cast<uint8_t*>(row);
  for (int64_t b = 0; b < n / kQK; ++b) {
    Block block{};
    block.d = in[b].d[lane];
    if constexpr (LegacyTraits<BlockLegacyx8>::kMin) block.m = in[b].m[lane];
    uint8_t codes[32];
    interleaved::GetRunCodes<kLegacyBits<BlockLegacyx8>>(in[b].qs, lane, codes);
    PutLegacyCodes(codes, block);
    std::memcpy(out + b * sizeof(Block), &block, sizeof block);
  }
}

template <typename BlockLegacyx8>
void UnpackRowsLegacy(const void* src, int64_t n, int64_t, int8_t* const codes[8], float* const d[8],
                      float* const m[8]) {
  using Traits = LegacyTraits<BlockLegacyx8>;
  const auto* x = static_cast<const BlockLegacyx8*>(src);
  const float* half = HalfTable();
  for (int64_t b = 0; b < n / kQK; ++b) {
    for (int r = 0; r < 8; ++r) {
      // As UnpackLegacy gives the row's blocks.
      d[r][b] = half[x[b].d[r]];
      if constexpr (Traits::kMin) {
        m[r][b] = half[x[b].m[r]];
      } else {
        m[r][b] = 0.0f;
      }
      uint8_t c[32];
      interleaved::GetRunCodes<kLegacyBits<BlockLegacyx8>>(x[b].qs, r, c);
      for (int k = 0; k < 32; ++k) codes[r][b * kQK + k] = static_cast<int8_t>(c[k] - Traits::kOffset);
    }
  }
}

template void InterleaveLegacy<BlockQ4_1x8, BlockQ4_1>(const void*, size_t, int64_t, int64_t, void*);
template void InterleaveLegacy<BlockQ5_0x8, BlockQ5_0>(const void*, size_t, int64_t, int64_t, void*);
template void InterleaveLegacy<BlockQ5_1x8, BlockQ5_1>(const void*, size_t, int64_t, int64_t, void*);
template void ExtractRowLegacy<BlockQ4_1x8, BlockQ4_1>(const void*, int, int64_t, int64_t, void*);
template void ExtractRowLegacy<BlockQ5_0x8, BlockQ5_0>(const void*, int, int64_t, int64_t, void*);
template void ExtractRowLegacy<BlockQ5_1x8, BlockQ5_1>(const void*, int, int64_t, int64_t, void*);
template void UnpackRowsLegacy<BlockQ4_1x8>(const void*, int64_t, int64_t, int8_t* const[8], float* const[8],
                                            float* const[8]);
template void UnpackRowsLegacy<BlockQ5_0x8>(const void*, int64_t, int64_t, int8_t* const[8], float* const[8],
                                            float* const[8]);
template void UnpackRowsLegacy<BlockQ5_1x8>(const void*, int64_t, int64_t, int8_t* const[8], float* const[8],
                                            float* const[8]);

static_assert(sizeof(BlockIQ4_NL) == sizeof(BlockQ4_0) && offsetof(BlockIQ4_NL, qs) == offsetof(BlockQ4_0, qs),
              "IQ4_NL's groups are Q4_0's (InterleaveQ4_0, ExtractRowQ4_0)");

void UnpackRowsIQ4_NL(const void* src, int64_t n, int64_t, int8_t* const codes[8], float* const d[8],
                      float* const m[8]) {
  const auto* x = static_cast<const BlockQ4_0x8*>(src);
  const float* half = HalfTable();
  for (int64_t b = 0; b < n / kQK; ++b) {
    for (int r = 0; r < 8; ++r) {
      d[r][b] = half[x[b].d[r]];
      m[r][b] = 0.0f;
      uint8_t indices[32];
      interleaved::GetNibbleRuns(x[b].qs, r, indices);
      for (int k = 0; k < 32; ++k) codes[r][b * kQK + k] = kIq4nlValues[indices[k]];
    }
  }
}

namespace {

// IQ4_XS sub-block s's 6-bit scale (0..63) in a block, and back.
int GetIQ4_XSScale(const BlockIQ4_XS& b, int s) {
  return ((b.scales_l[s / 2] >> (4 * (s % 2))) & 0x0f) | ((b.scales_h >> (2 * s)) & 3) << 4;
}
void PutIQ4_XSScale(int scale, int s, BlockIQ4_XS& b) {
  b.scales_l[s / 2] = static_cast<uint8_t>(b.scales_l[s / 2] | (scale & 0x0f) << (4 * (s % 2)));
  b.scales_h = static_cast<uint16_t>(b.scales_h | (scale >> 4) << (2 * s));
}

}  // namespace

void InterleaveIQ4_XS(const void* rows, size_t row_bytes, int64_t n, int64_t, void* dst) {
  const auto* src = static_cast<const uint8_t*>(rows);
  auto* out = static_cast<BlockIQ4_XSx8*>(dst);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    for (int r = 0; r < 8; ++r) {
      BlockIQ4_XS block;
      std::memcpy(&block, src + r * row_bytes + b * sizeof(BlockIQ4_XS), sizeof block);
      out[b].d[r] = block.d;
      for (int s = 0; s < 8; ++s) {
        out[b].scales[s][r] = static_cast<int8_t>(GetIQ4_XSScale(block, s) - 32);
        // Sub-block s is packed as IQ4_NL's block: byte j holds codes j and j + 16.
        for (int j = 0; j < 4; ++j) std::memcpy(out[b].qs[s] + 32 * j + 4 * r, block.qs + 16 * s + 4 * j, 4);
      }
    }
  }
}

void ExtractRowIQ4_XS(const void* src, int lane, int64_t n, int64_t, void* row) {
  const auto* in = static_cast<const BlockIQ4_XSx8*>(src);
  auto* out = static_cast<uint8_t*>(row);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    BlockIQ4_XS block{};
    block.d = in[b].d[lane];
    for (int s = 0; s < 8; ++s) {
      PutIQ4_XSScale(in[b].scales[s][lane] + 32, s, block);
      for (int j = 0; j < 4; ++j) std::memcpy(block.qs + 16 * s + 4 * j, in[b].qs[s] + 32 * j + 4 * lane, 4);
    }
    std::memcpy(out + b * sizeof(BlockIQ4_XS), &block, sizeof block);
  }
}

void UnpackRowsIQ4_XS(const void* src, int64_t n, int64_t, int8_t* const codes[8], float* const d[8],
                      float* const m[8]) {
  const auto* x = static_cast<const BlockIQ4_XSx8*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    for (int r = 0; r < 8; ++r) {
      // As UnpackK<BlockIQ4_XS> gives them: d * scale, and -0 * 0 for m.
      const float dd = F16ToF32(x[b].d[r]);
      for (int s = 0; s < 8; ++s) {
        d[r][b * 8 + s] = dd * static_cast<float>(x[b].scales[s][r]);
        m[r][b * 8 + s] = -0.0f;
        uint8_t indices[32];
        interleaved::GetNibbleRuns(x[b].qs[s], r, indices);
        for (int k = 0; k < 32; ++k) codes[r][b * kQK_K + 32 * s + k] = kIq4nlValues[indices[k]];
      }
    }
  }
}

namespace {

// Q4_K and Q5_K rows (Block) into their groups (BlockKx8) and back: the same scales, mins and codes, Q5_K's
// with their fifth bits after each sub-block's runs.
template <typename Block, typename BlockKx8>
void InterleaveK(const void* rows, size_t row_bytes, int64_t n, void* dst) {
  constexpr int kBits = std::is_same_v<Block, BlockQ5_K> ? 5 : 4;
  const auto* src = static_cast<const uint8_t*>(rows);
  auto* out = static_cast<BlockKx8*>(dst);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    uint8_t codes[8][8][32];  // [sub-block][row][code]
    for (int r = 0; r < 8; ++r) {
      Block block;
      std::memcpy(&block, src + r * row_bytes + b * sizeof(Block), sizeof block);
      PutKScalesMins(block.d, block.dmin, block.scales, r, out[b]);
      for (int s = 0; s < 8; ++s) GetKCodes(block, s, codes[s][r]);
    }
    for (int s = 0; s < 8; ++s) interleaved::PutRunBlock<kBits>(codes[s], out[b].qs[s]);
  }
}

template <typename Block, typename BlockKx8>
void ExtractRowK(const void* src, int lane, int64_t n, void* row) {
  constexpr int kBits = std::is_same_v<Block, BlockQ5_K> ? 5 : 4;
  const auto* in = static_cast<const BlockKx8*>(src);
  auto* out = static_cast<uint8_t*>(row);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    Block block{};
    GetKScalesMins(in[b], lane, &block.d, &block.dmin, block.scales);
    for (int s = 0; s < 8; ++s) {
      uint8_t codes[32];
      interleaved::GetRunCodes<kBits>(in[b].qs[s], lane, codes);
      PutKCodes(codes, s, block);
    }
    std::memcpy(out + b * sizeof(Block), &block, sizeof block);
  }
}

}  // namespace

void InterleaveQ4_K(const void* rows, size_t row_bytes, int64_t n, int64_t, void* dst) {
  InterleaveK<BlockQ4_K, BlockQ4_Kx8>(rows, row_bytes, n, dst);
}
void ExtractRowQ4_K(const void* src, int lane, int64_t n, int64_t, void* row) {
  ExtractRowK<BlockQ4_K, BlockQ4_Kx8>(src, lane, n, row);
}
void InterleaveQ5_K(const void* rows, size_t row_bytes, int64_t n, int64_t, void* dst) {
  InterleaveK<BlockQ5_K, BlockQ5_Kx8>(rows, row_bytes, n, dst);
}
void ExtractRowQ5_K(const void* src, int lane, int64_t n, int64_t, void* row) {
  ExtractRowK<BlockQ5_K, BlockQ5_Kx8>(src, lane, n, row);
}

void UnpackRowsQ4_0(const void* src, int64_t n, int64_t, int8_t* const codes[8], float* const d[8],
                    float* const m[8]) {
  const auto* x = static_cast<const BlockQ4_0x8*>(src);
  const float* half = HalfTable();
  for (int64_t b = 0; b < n / kQK; ++b) {
    for (int r = 0; r < 8; ++r) {
      d[r][b] = half[x[b].d[r]];
      m[r][b] = 0.0f;
    }
    interleaved::UnpackNibbleRuns(x[b].qs, 8, codes, b * kQK);
  }
}

void UnpackRowsQ8_0(const void* src, int64_t n, int64_t, int8_t* const codes[8], float* const d[8],
                    float* const m[8]) {
  const auto* x = static_cast<const BlockQ8_0x8*>(src);
  const float* half = HalfTable();
  for (int64_t b = 0; b < n / kQK; ++b) {
    for (int r = 0; r < 8; ++r) {
      d[r][b] = half[x[b].d[r]];
      m[r][b] = 0.0f;
      for (int j = 0; j < 8; ++j) std::memcpy(codes[r] + b * kQK + 4 * j, x[b].qs + 32 * j + 4 * r, 4);
    }
  }
}

void UnpackRowsQ4_K(const void* src, int64_t n, int64_t, int8_t* const codes[8], float* const d[8],
                    float* const m[8]) {
  const auto* x = static_cast<const BlockQ4_Kx8*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    UnpackKScalesMins(x[b], b, d, m);
    for (int s = 0; s < 8; ++s) interleaved::UnpackNibbleRuns(x[b].qs[s], 0, codes, b * kQK_K + 32 * s);
  }
}

void UnpackRowsQ5_K(const void* src, int64_t n, int64_t, int8_t* const codes[8], float* const d[8],
                    float* const m[8]) {
  const auto* x = static_cast<const BlockQ5_Kx8*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    UnpackKScalesMins(x[b], b, d, m);
    for (int s = 0; s < 8; ++s) {
      for (int r = 0; r < 8; ++r) {
        uint8_t c[32];
        interleaved::GetRunCodes<5>(x[b].qs[s], r, c);
        for (int k = 0; k < 32; ++k) codes[r][b * kQK_K + 32 * s + k] = static_cast<int8_t>(c[k]);
      }
    }
  }
}

namespace {

// Where Q6_K keeps code i (0..255) of a block: its low 4 bits in ql[ql] at bit ql_shift, its high 2 bits in
// qh[qh] at bit qh_shift (ggml's layout: two halves of 128 codes, each four parts of 32; UnpackQ6_K).
struct Q6_KPlace {
  int ql, ql_shift, qh, qh_shift;
};
constexpr Q6_KPlace PlaceOfQ6_KCode(int i) {
  const int half = i / 128, part = (i % 128) / 32, l = i % 32;
  return {64 * half + 32 * (part % 2) + l, 4 * (part / 2), 32 * half + l, 2 * part};
}

}  // namespace

void InterleaveQ6_K(const void* rows, size_t row_bytes, int64_t n, int64_t, void* dst) {
  const auto* src = static_cast<const uint8_t*>(rows);
  auto* out = static_cast<BlockQ6_Kx8*>(dst);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    uint8_t codes[8][8][32];  // [sub-block][row][code]
    for (int r = 0; r < 8; ++r) {
      BlockQ6_K block;
      std::memcpy(&block, src + r * row_bytes + b * sizeof(BlockQ6_K), sizeof block);
      out[b].d[r] = block.d;
      for (int s = 0; s < 8; ++s) {
        out[b].scales[s][2 * r] = block.scales[2 * s];
        out[b].scales[s][2 * r + 1] = block.scales[2 * s + 1];
      }
      // Part p (0..3) of half h is sub-block 4h + p: PlaceOfQ6_KCode's places as loops over l that vectorize.
      for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = block.ql + 64 * h;
        const uint8_t* qh = block.qh + 32 * h;
        for (int part = 0; part < 4; ++part) {
          uint8_t* c = codes[4 * h + part][r];
          const uint8_t* low = ql + 32 * (part % 2);
          const int low_shift = 4 * (part / 2), high_shift = 2 * part;
          for (int l = 0; l < 32; ++l) {
            c[l] = static_cast<uint8_t>(((low[l] >> low_shift) & 0x0f) | ((qh[l] >> high_shift) & 3) << 4);
          }
        }
      }
    }
    for (int s = 0; s < 8; ++s) interleaved::PutRunBlock<6>(codes[s], out[b].qs[s]);
  }
}

void ExtractRowQ6_K(const void* src, int lane, int64_t n, int64_t, void* row) {
  const auto* in = static_cast<const BlockQ6_Kx8*>(src);
  auto* out = static_cast<uint8_t*>(row);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    BlockQ6_K block{};
    block.d = in[b].d[lane];
    for (int s = 0; s < 8; ++s) {
      block.scales[2 * s] = in[b].scales[s][2 * lane];
      block.scales[2 * s + 1] = in[b].scales[s][2 * lane + 1];
      uint8_t codes[32];
      interleaved::GetRunCodes<6>(in[b].qs[s], lane, codes);
      for (int k = 0; k < 32; ++k) {
        const Q6_KPlace to = PlaceOfQ6_KCode(32 * s + k);
        block.ql[to.ql] |= static_cast<uint8_t>((codes[k] & 0x0f) << to.ql_shift);
        block.qh[to.qh] |= static_cast<uint8_t>((codes[k] >> 4) << to.qh_shift);
      }
    }
    std::memcpy(out + b * sizeof(BlockQ6_K), &block, sizeof block);
  }
}

void UnpackRowsQ6_K(const void* src, int64_t n, int64_t, int8_t* const codes[8], float* const d[8],
                    float* const m[8]) {
  const auto* x = static_cast<const BlockQ6_Kx8*>(src);
  const float* half = HalfTable();
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    for (int r = 0; r < 8; ++r) {
      // The operations of UnpackQ6_K, so the blocks are its bit for bit.
      const float dd = half[x[b].d[r]];
      for (int s = 0; s < 8; ++s) {
        d[r][b * 16 + 2 * s] = dd * static_cast<float>(x[b].scales[s][2 * r]);
        d[r][b * 16 + 2 * s + 1] = dd * static_cast<float>(x[b].scales[s][2 * r + 1]);
        m[r][b * 16 + 2 * s] = m[r][b * 16 + 2 * s + 1] = 0.0f;
        uint8_t c[32];
        interleaved::GetRunCodes<6>(x[b].qs[s], r, c);
        for (int k = 0; k < 32; ++k) codes[r][b * kQK_K + 32 * s + k] = static_cast<int8_t>(c[k] - 32);
      }
    }
  }
}

namespace {

// A Q3_K block's codes as u = q + 4 (0..7) and its scales as scale - 32, and back: every bit of the block is
// one of these (hmask, qs, the 12 scale bytes), so the round trip is exact.
void GetQ3_K(const BlockQ3_K& b, uint8_t u[kQK_K], int8_t scales[16]) {
  KBlock k;
  DecodeQ3_K(b, &k);
  for (int i = 0; i < kQK_K; ++i) u[i] = static_cast<uint8_t>(k.q[i] + 4);
  for (int s = 0; s < 16; ++s) scales[s] = static_cast<int8_t>(k.scale[s]);
}
void PutQ3_K(const uint8_t u[kQK_K], const int8_t scales[16], BlockQ3_K& b) {
  for (int i = 0; i < kQK_K; ++i) {
    PutTwoBits(b.qs, i, u[i]);
    b.hmask[i % 32] |= static_cast<uint8_t>((u[i] >> 2) << (4 * (i / 128) + (i % 128) / 32));
  }
  for (int sub = 0; sub < 16; ++sub) {
    const int v = scales[sub] + 32;
    if (sub < 8) {
      b.scales[sub] |= static_cast<uint8_t>(v & 0x0f);
    } else {
      b.scales[sub - 8] |= static_cast<uint8_t>((v & 0x0f) << 4);
    }
    b.scales[8 + sub % 4] |= static_cast<uint8_t>((v >> 4) << (2 * (sub / 4)));
  }
}

}  // namespace

void InterleaveQ2_K(const void* rows, size_t row_bytes, int64_t n, int64_t, void* dst) {
  const auto* src = static_cast<const uint8_t*>(rows);
  auto* out = static_cast<BlockQ2_Kx8*>(dst);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    uint8_t u[8][8][32];  // [32-code block][row][code]
    for (int r = 0; r < 8; ++r) {
      BlockQ2_K block;
      std::memcpy(&block, src + r * row_bytes + b * sizeof(BlockQ2_K), sizeof block);
      out[b].d[r] = block.d;
      out[b].dmin[r] = block.dmin;
      for (int sub = 0; sub < 16; ++sub) out[b].scales_mins[sub][r] = block.scales[sub];
      uint8_t codes[kQK_K];
      AllTwoBits(block.qs, codes);
      for (int t = 0; t < 8; ++t) std::memcpy(u[t][r], codes + 32 * t, 32);
    }
    for (int t = 0; t < 8; ++t) interleaved::PutRunBlock<2>(u[t], out[b].qs[t]);
  }
}

void ExtractRowQ2_K(const void* src, int lane, int64_t n, int64_t, void* row) {
  const auto* in = static_cast<const BlockQ2_Kx8*>(src);
  auto* out = static_cast<uint8_t*>(row);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    BlockQ2_K block{};
    block.d = in[b].d[lane];
    block.dmin = in[b].dmin[lane];
    for (int sub = 0; sub < 16; ++sub) block.scales[sub] = in[b].scales_mins[sub][lane];
    uint8_t u[kQK_K];
    for (int t = 0; t < 8; ++t) interleaved::GetCrumbRuns<2>(in[b].qs[t], lane, u + 32 * t);
    for (int i = 0; i < kQK_K; ++i) PutTwoBits(block.qs, i, u[i]);
    std::memcpy(out + b * sizeof(BlockQ2_K), &block, sizeof block);
  }
}

void UnpackRowsQ2_K(const void* src, int64_t n, int64_t, int8_t* const codes[8], float* const d[8],
                    float* const m[8]) {
  const auto* x = static_cast<const BlockQ2_Kx8*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    for (int r = 0; r < 8; ++r) {
      // As UnpackK<BlockQ2_K> gives them: d * scale, -dmin * min.
      const float dd = F16ToF32(x[b].d[r]), dmin = F16ToF32(x[b].dmin[r]);
      for (int sub = 0; sub < 16; ++sub) {
        d[r][b * 16 + sub] = dd * static_cast<float>(x[b].scales_mins[sub][r] & 0x0f);
        m[r][b * 16 + sub] = -dmin * static_cast<float>(x[b].scales_mins[sub][r] >> 4);
      }
      for (int t = 0; t < 8; ++t) {
        uint8_t u[32];
        interleaved::GetCrumbRuns<2>(x[b].qs[t], r, u);
        for (int c = 0; c < 32; ++c) codes[r][b * kQK_K + 32 * t + c] = static_cast<int8_t>(u[c]);
      }
    }
  }
}

void InterleaveQ3_K(const void* rows, size_t row_bytes, int64_t n, int64_t, void* dst) {
  const auto* src = static_cast<const uint8_t*>(rows);
  auto* out = static_cast<BlockQ3_Kx8*>(dst);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    uint8_t u[8][8][32];  // [32-code block][row][code]
    for (int r = 0; r < 8; ++r) {
      BlockQ3_K block;
      std::memcpy(&block, src + r * row_bytes + b * sizeof(BlockQ3_K), sizeof block);
      out[b].d[r] = block.d;
      uint8_t codes[kQK_K];
      int8_t scales[16];
      GetQ3_K(block, codes, scales);
      for (int sub = 0; sub < 16; ++sub) out[b].scales[sub][r] = scales[sub];
      for (int t = 0; t < 8; ++t) std::memcpy(u[t][r], codes + 32 * t, 32);
    }
    for (int t = 0; t < 8; ++t) interleaved::PutRunBlock<3>(u[t], out[b].qs[t]);
  }
}

void ExtractRowQ3_K(const void* src, int lane, int64_t n, int64_t, void* row) {
  const auto* in = static_cast<const BlockQ3_Kx8*>(src);
  auto* out = static_cast<uint8_t*>(row);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    BlockQ3_K block{};
    block.d = in[b].d[lane];
    uint8_t u[kQK_K];
    int8_t scales[16];
    for (int sub = 0; sub < 16; ++sub) scales[sub] = in[b].scales[sub][lane];
    for (int t = 0; t < 8; ++t) interleaved::GetCrumbRuns<3>(in[b].qs[t], lane, u + 32 * t);
    PutQ3_K(u, scales, block);
    std::memcpy(out + b * sizeof(BlockQ3_K), &block, sizeof block);
  }
}

void UnpackRowsQ3_K(const void* src, int64_t n, int64_t, int8_t* const codes[8], float* const d[8],
                    float* const m[8]) {
  const auto* x = static_cast<const BlockQ3_Kx8*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    for (int r = 0; r < 8; ++r) {
      // As UnpackK<BlockQ3_K> gives them: d * scale, and -0 * 0 for m (Q3_K has no mins).
      const float dd = F16ToF32(x[b].d[r]);
      for (int sub = 0; sub < 16; ++sub) {
        d[r][b * 16 + sub] = dd * static_cast<float>(x[b].scales[sub][r]);
        m[r][b * 16 + sub] = -0.0f;
      }
      for (int t = 0; t < 8; ++t) {
        uint8_t u[32];
        interleaved::GetCrumbRuns<3>(x[b].qs[t], r, u);
        for (int c = 0; c < 32; ++c) codes[r][b * kQK_K + 32 * t + c] = static_cast<int8_t>(u[c] - 4);
      }
    }
  }
}

const float* HalfTable() {
  static const float* table = [] {
    static float values[65536];
    for (uint32_t h = 0; h < 65536; ++h) values[h] = F16ToF32(static_cast<uint16_t>(h));
    return values;
  }();
  return table;
}

}  // namespace ggml_dot

namespace {

using namespace ggml_dot;

size_t Q8_0Bytes(int64_t n, int64_t) { return static_cast<size_t>(n / ggml::kQK) * sizeof(ggml::BlockQ8_0); }
size_t Q8_1Bytes(int64_t n, int64_t) { return static_cast<size_t>(n / ggml::kQK) * sizeof(ggml::BlockQ8_1); }
size_t Q8_KBytes(int64_t n, int64_t) { return static_cast<size_t>(n / ggml::kQK_K) * sizeof(ggml::BlockQ8_K); }

const char* IsaAvx512() { return "AVX512-VNNI"; }
const char* IsaAvx2() { return "AVX2"; }
const char* IsaScalar() { return "scalar"; }

// Code ranges (code_bits, code_bias): Q8_0 [-127, 127], IQ4 levels [-127, 113], Q6_K [-32, 31], Q5_0
// [-16, 15], Q5_1 / Q5_K [0, 31], Q4_0 [-8, 7], Q4_1 / Q4_K [0, 15], Q3_K [-4, 3], Q2_K [0, 3].
#define MIXQ_PACKED_LEGACY(name, type, offset, bits, bias, act)                                              \
  const PackedGemmFormat name{kQK,      offset,                                                              \
                              bits,     bias,                                                                \
                              Blocks32, UnpackLegacy<Block##type, Codes##type<int8_t>, offset>,              \
                              ExpandQ8_32<act>}
MIXQ_PACKED_LEGACY(kPackedQ8_0, Q8_0, false, 8, 128, BlockQ8_0);
MIXQ_PACKED_LEGACY(kPackedQ4_0, Q4_0, false, 4, 8, BlockQ8_0);
MIXQ_PACKED_LEGACY(kPackedQ4_1, Q4_1, true, 4, 0, BlockQ8_1);
MIXQ_PACKED_LEGACY(kPackedQ5_0, Q5_0, false, 5, 16, BlockQ8_0);
MIXQ_PACKED_LEGACY(kPackedQ5_1, Q5_1, true, 5, 0, BlockQ8_1);
MIXQ_PACKED_LEGACY(kPackedIQ4_NL, IQ4_NL, false, 8, 128, BlockQ8_0);
#undef MIXQ_PACKED_LEGACY
// The k-quants read Q8_K activations: one scale per 256 values, a span of 256 / width blocks.
const PackedGemmFormat kPackedQ2_K{16, true, 2, 0, Blocks16, UnpackK<BlockQ2_K, DecodeQ2_K>,
                                   ExpandQ8_K<16>, kQK_K / 16};
const PackedGemmFormat kPackedQ3_K{16, false, 3, 4, Blocks16, UnpackK<BlockQ3_K, DecodeQ3_K>,
                                   ExpandQ8_K<16>, kQK_K / 16};
const PackedGemmFormat kPackedQ4_K{32, true, 4, 0, Blocks32, UnpackQ4_K, ExpandQ8_K<32>, kQK_K / 32};
const PackedGemmFormat kPackedQ5_K{32, true, 5, 0, Blocks32, UnpackK<BlockQ5_K, DecodeQ5_K>,
                                   ExpandQ8_K<32>, kQK_K / 32};
const PackedGemmFormat kPackedQ6_K{16, false, 6, 32, Blocks16, UnpackQ6_K, ExpandQ8_K<16>, kQK_K / 16};
const PackedGemmFormat kPackedIQ4_XS{32, false, 8, 128, Blocks32, UnpackK<BlockIQ4_XS, DecodeIQ4_XS>,
                                     ExpandQ8_K<32>, kQK_K / 32};

#if defined(__x86_64__)
template <typename GroupBlock, int kBlockWeights>
size_t GroupBytes(int64_t n, int64_t) {
  return static_cast<size_t>(n / kBlockWeights) * sizeof(GroupBlock);
}
constexpr InterleavedRows kInterleavedQ4_0Avx2{InterleaveAcceptsAll, GroupBytes<BlockQ4_0x8, kQK>, InterleaveQ4_0,
                                           ExtractRowQ4_0, UnpackRowsQ4_0, DotGroupsQ4_0Avx2,
                                           UnpackPanelQ4_0Avx2};
constexpr InterleavedRows kInterleavedQ8_0Avx2{InterleaveAcceptsAll, GroupBytes<BlockQ8_0x8, kQK>, InterleaveQ8_0,
                                           ExtractRowQ8_0, UnpackRowsQ8_0, DotGroupsQ8_0Avx2,
                                           UnpackPanelQ8_0Avx2};
const InterleavedRows kInterleavedQ4_KAvx2{InterleaveAcceptsAll, GroupBytes<BlockQ4_Kx8, kQK_K>, InterleaveQ4_K,
                                           ExtractRowQ4_K, UnpackRowsQ4_K, DotGroupsQ4_KAvx2,
                                           UnpackPanelQ4_KAvx2};
#define MIXQ_INTERLEAVED_LEGACY(type)                                                                             \
  const InterleavedRows kInterleaved##type##Avx2{InterleaveAcceptsAll, GroupBytes<Block##type##x8, kQK>,          \
                                                 InterleaveLegacy<Block##type##x8, Block##type>,                  \
                                                 ExtractRowLegacy<Block##type##x8, Block##type>,                  \
                                                 UnpackRowsLegacy<Block##type##x8>, DotGroups##type##Avx2,        \
                                                 UnpackPanel##type##Avx2}
MIXQ_INTERLEAVED_LEGACY(Q4_1);
MIXQ_INTERLEAVED_LEGACY(Q5_0);
MIXQ_INTERLEAVED_LEGACY(Q5_1);
#undef MIXQ_INTERLEAVED_LEGACY
constexpr InterleavedRows kInterleavedIQ4_NLAvx2{InterleaveAcceptsAll, GroupBytes<BlockQ4_0x8, kQK>, InterleaveQ4_0,
                                             ExtractRowQ4_0, UnpackRowsIQ4_NL, DotGroupsIQ4_NLAvx2,
                                             UnpackPanelIQ4_NLAvx2};
constexpr InterleavedRows kInterleavedIQ4_XSAvx2{InterleaveAcceptsAll, GroupBytes<BlockIQ4_XSx8, kQK_K>,
                                             InterleaveIQ4_XS, ExtractRowIQ4_XS, UnpackRowsIQ4_XS,
                                             DotGroupsIQ4_XSAvx2, UnpackPanelIQ4_XSAvx2};
// The same layouts with the group kernels the AVX-512 level takes (MakeKernel says why).
constexpr InterleavedRows WithDotGroups(const InterleavedRows& layout,
                                        decltype(InterleavedRows::dot_groups) dot_groups) {
  InterleavedRows same = layout;
  same.dot_groups = dot_groups;
  return same;
}
constexpr InterleavedRows kInterleavedQ4_0Avx512 = WithDotGroups(kInterleavedQ4_0Avx2, DotGroupsQ4_0Vnni);
constexpr InterleavedRows kInterleavedQ8_0Avx512 = WithDotGroups(kInterleavedQ8_0Avx2, DotGroupsQ8_0Vnni);
constexpr InterleavedRows kInterleavedIQ4_NLAvx512 = WithDotGroups(kInterleavedIQ4_NLAvx2, DotGroupsIQ4_NLVnni);
constexpr InterleavedRows kInterleavedIQ4_XSAvx512 = WithDotGroups(kInterleavedIQ4_XSAvx2, DotGroupsIQ4_XSVnni);
const InterleavedRows kInterleavedQ5_KAvx2{InterleaveAcceptsAll, GroupBytes<BlockQ5_Kx8, kQK_K>, InterleaveQ5_K,
                                           ExtractRowQ5_K, UnpackRowsQ5_K, DotGroupsQ5_KAvx2,
                                           UnpackPanelQ5_KAvx2};
const InterleavedRows kInterleavedQ2_KAvx2{InterleaveAcceptsAll, GroupBytes<BlockQ2_Kx8, kQK_K>, InterleaveQ2_K,
                                           ExtractRowQ2_K, UnpackRowsQ2_K, DotGroupsQ2_KAvx2,
                                           UnpackPanelQ2_KAvx2};
const InterleavedRows kInterleavedQ3_KAvx2{InterleaveAcceptsAll, GroupBytes<BlockQ3_Kx8, kQK_K>, InterleaveQ3_K,
                                           ExtractRowQ3_K, UnpackRowsQ3_K, DotGroupsQ3_KAvx2,
                                           UnpackPanelQ3_KAvx2};
const InterleavedRows kInterleavedQ6_KAvx2{InterleaveAcceptsAll, GroupBytes<BlockQ6_Kx8, kQK_K>, InterleaveQ6_K,
                                           ExtractRowQ6_K, UnpackRowsQ6_K, DotGroupsQ6_KAvx2,
                                           UnpackPanelQ6_KAvx2};
#endif

using DotFn = float (*)(const void*, const void*, int64_t, int64_t);
using DotRowsFn = decltype(QuantKernel::dot_rows);

struct Entry {
  DType weight;
  DType activation;
  DotFn dot_ref;
  DotFn dot_avx2;
  DotRowsFn dot_rows_avx2;  // nullptr: MatMul calls dot per row
  DotFn dot_avx512;         // nullptr: the AVX2 kernels serve the AVX-512 level too
  DotRowsFn dot_rows_avx512;
  const PackedGemmFormat* packed;  // handed out at the SIMD levels (packed micro-kernels: VNNI, AVX2)
  const InterleavedRows* interleaved_avx2 = nullptr;  // handed out at both SIMD levels (MakeKernel)
  const InterleavedRows* interleaved_avx512 = nullptr;  // the same layout, for the AVX-512 level only
};

#if defined(__x86_64__)
#define MIXQ_X86_OR_NULL(fn) fn
#else
#define MIXQ_X86_OR_NULL(fn) nullptr
#endif

#define MIXQ_SIMD_ROW(type)                                                                              \
  MIXQ_X86_OR_NULL(Dot##type##Avx2), MIXQ_X86_OR_NULL(DotRows##type##Avx2), MIXQ_X86_OR_NULL(Dot##type##Avx512), \
      MIXQ_X86_OR_NULL(DotRows##type##Avx512)
#define MIXQ_AVX2_ONLY_ROW(type) MIXQ_X86_OR_NULL(Dot##type##Avx2), nullptr, nullptr, nullptr

const Entry kEntries[] = {
    {DType::kQ8_0, DType::kQ8_0, DotQ8_0Ref, MIXQ_SIMD_ROW(Q8_0), &kPackedQ8_0,
     MIXQ_X86_OR_NULL(&kInterleavedQ8_0Avx2), MIXQ_X86_OR_NULL(&kInterleavedQ8_0Avx512)},
    {DType::kQ4_0, DType::kQ8_0, DotQ4_0Ref, MIXQ_SIMD_ROW(Q4_0), &kPackedQ4_0,
     MIXQ_X86_OR_NULL(&kInterleavedQ4_0Avx2), MIXQ_X86_OR_NULL(&kInterleavedQ4_0Avx512)},
    {DType::kQ4_1, DType::kQ8_1, DotQ4_1Ref, MIXQ_SIMD_ROW(Q4_1), &kPackedQ4_1,
     MIXQ_X86_OR_NULL(&kInterleavedQ4_1Avx2)},
    {DType::kQ5_0, DType::kQ8_0, DotQ5_0Ref, MIXQ_SIMD_ROW(Q5_0), &kPackedQ5_0,
     MIXQ_X86_OR_NULL(&kInterleavedQ5_0Avx2)},
    {DType::kQ5_1, DType::kQ8_1, DotQ5_1Ref, MIXQ_SIMD_ROW(Q5_1), &kPackedQ5_1,
     MIXQ_X86_OR_NULL(&kInterleavedQ5_1Avx2)},
    {DType::kIQ4_NL, DType::kQ8_0, DotIQ4_NLRef, MIXQ_SIMD_ROW(IQ4_NL), &kPackedIQ4_NL,
     MIXQ_X86_OR_NULL(&kInterleavedIQ4_NLAvx2), MIXQ_X86_OR_NULL(&kInterleavedIQ4_NLAvx512)},
    {DType::kQ2_K, DType::kQ8_K, DotQ2_KRef, MIXQ_AVX2_ONLY_ROW(Q2_K), &kPackedQ2_K,
     MIXQ_X86_OR_NULL(&kInterleavedQ2_KAvx2)},
    {DType::kQ3_K, DType::kQ8_K, DotQ3_KRef, MIXQ_AVX2_ONLY_ROW(Q3_K), &kPackedQ3_K,
     MIXQ_X86_OR_NULL(&kInterleavedQ3_KAvx2)},
    {DType::kQ4_K, DType::kQ8_K, DotQ4_KRef, MIXQ_X86_OR_NULL(DotQ4_KAvx2), MIXQ_X86_OR_NULL(DotRowsQ4_KAvx2),
     nullptr, nullptr, &kPackedQ4_K, MIXQ_X86_OR_NULL(&kInterleavedQ4_KAvx2)},
    {DType::kQ5_K, DType::kQ8_K, DotQ5_KRef, MIXQ_AVX2_ONLY_ROW(Q5_K), &kPackedQ5_K,
     MIXQ_X86_OR_NULL(&kInterleavedQ5_KAvx2)},
    {DType::kQ6_K, DType::kQ8_K, DotQ6_KRef, MIXQ_X86_OR_NULL(DotQ6_KAvx2), MIXQ_X86_OR_NULL(DotRowsQ6_KAvx2),
     nullptr, nullptr, &kPackedQ6_K, MIXQ_X86_OR_NULL(&kInterleavedQ6_KAvx2)},
    {DType::kIQ4_XS, DType::kQ8_K, DotIQ4_XSRef, MIXQ_AVX2_ONLY_ROW(IQ4_XS), &kPackedIQ4_XS,
     MIXQ_X86_OR_NULL(&kInterleavedIQ4_XSAvx2), MIXQ_X86_OR_NULL(&kInterleavedIQ4_XSAvx512)},
};
constexpr size_t kEntryCount = sizeof(kEntries) / sizeof(kEntries[0]);
constexpr int kIsaCount = 3;

const Entry* FindEntry(DType dtype) {
  for (const Entry& e : kEntries) {
    if (e.weight == dtype) return &e;
  }
  return nullptr;
}

// The activation quantizers are the same at the AVX2 and AVX-512 levels (they run once per token).
QuantKernel MakeKernel(const Entry& e, Isa isa) {
  const bool simd = isa != Isa::kScalar;
  QuantKernel k{};
  k.weight_type = e.weight;
  switch (e.activation) {
    case DType::kQ8_0:
      k.activation_bytes = Q8_0Bytes;
      k.quantize_activation_ref = QuantizeQ8_0Ref;
      k.quantize_activation = simd ? MIXQ_X86_OR_NULL(QuantizeQ8_0Avx2) : QuantizeQ8_0Ref;
      break;
    case DType::kQ8_1:
      k.activation_bytes = Q8_1Bytes;
      k.quantize_activation_ref = QuantizeQ8_1Ref;
      k.quantize_activation = simd ? MIXQ_X86_OR_NULL(QuantizeQ8_1Avx2) : QuantizeQ8_1Ref;
      break;
    default:
      k.activation_bytes = Q8_KBytes;
      k.quantize_activation_ref = QuantizeQ8_KRef;
      k.quantize_activation = simd ? MIXQ_X86_OR_NULL(QuantizeQ8_KAvx2) : QuantizeQ8_KRef;
      break;
  }
  k.dot_ref = e.dot_ref;
  if (simd) k.packed = e.packed;
  // The AVX2 interleaved decode serves the AVX-512 level too: decode is bound by memory, and reading 8
  // rows a block beat the AVX-512 one-row walk on a 2-core Zen 4 (tg64 on the 4-layer LLaMA-2-7B shape,
  // alternating: Q4_0 38 -> 47 t/s, Q5_1 28 -> 42, IQ4_NL 38 -> 54; Q3_K, whose only row kernel is AVX2,
  // 22 -> 68; docs/kernels.md). Some types' group kernels differ at the AVX-512 level, on the same layout:
  // - where the AVX2 one needs the sign trick (signed codes: IQ4 levels, Q8_0), a VNNI one takes biased
  //   codes straight into `vpdpbusd`: one thread's GEMV on memory-resident 4096x11008 / 11008x4096
  //   matrices, IQ4_NL 19-20 -> 23-28 GB/s, IQ4_XS 15-19 -> 20-24;
  // - Q4_0 walks one group a call instead of two: on the 2-core Zen 4 two groups held tg64 at 53-62 t/s
  //   in minutes where one group ran 77-84 and Q4_1 73-78 (6 alternating rounds); on the AVX2-only Zen 3
  //   two groups had measured +10.5%, so that level keeps them. Its nibbles (c + 8) go into `vpdpbusd` as
  //   they are, two chains a block (a VNNI kernel with one chain had measured the same as AVX2), as the
  //   run kernels of IQ4_NL, IQ4_XS and Q8_0 now do: one thread in cache (`OMP_NUM_THREADS=1
  //   build-bench/ggml_dot_bench --benchmark_filter='BM_GemvInterleavedCached/(2|20|8)/'`, against
  //   MIXQ_MAX_ISA=avx2, 2 alternations) Q4_0 16.7-16.9 -> 16.4-16.5 us, IQ4_NL 27.9-28.0 -> 17.1-19.7,
  //   Q8_0 24.1-24.3 -> 19.8-20.2; decode from memory (two threads) within the noise.
  if (simd) k.interleaved = e.interleaved_avx2;
  if (isa == Isa::kAvx512 && e.interleaved_avx512 != nullptr) k.interleaved = e.interleaved_avx512;
  if (isa == Isa::kAvx512 && e.dot_avx512 != nullptr) {
    k.dot = e.dot_avx512;
    k.dot_rows = e.dot_rows_avx512;
    k.isa = IsaAvx512;
  } else if (simd) {
    k.dot = e.dot_avx2;
    k.dot_rows = e.dot_rows_avx2;
    k.isa = IsaAvx2;
  } else {
    k.dot = e.dot_ref;
    k.isa = IsaScalar;
  }
  return k;
}

#undef MIXQ_SIMD_ROW
#undef MIXQ_AVX2_ONLY_ROW
#undef MIXQ_X86_OR_NULL

bool CpuHas(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return true;
    case Isa::kAvx2: return CpuHasAvx2();
    case Isa::kAvx512: return CpuHasAvx512Vnni();
  }
  return false;
}

// Every level's table, built once; a level this CPU lacks stays empty and is never handed out (its
// function pointers would be AVX2/AVX-512 code, and non-x86 builds have only the scalar symbols).
const QuantKernel* KernelTable(Isa isa) {
  static const auto* tables = [] {
    static QuantKernel table[kIsaCount][kEntryCount];
    for (const Isa level : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
      if (!CpuHas(level)) continue;
      for (size_t i = 0; i < kEntryCount; ++i) table[static_cast<int>(level)][i] = MakeKernel(kEntries[i], level);
    }
    return table;
  }();
  return tables[static_cast<int>(isa)];
}

Isa BestIsa() {
  static const Isa best = CpuHasAvx512Vnni() ? Isa::kAvx512 : CpuHasAvx2() ? Isa::kAvx2 : Isa::kScalar;
  return best;
}

}  // namespace

namespace ggml_dot {

const QuantKernel* GgmlQuantKernelAt(DType dtype, Isa isa) {
  const Entry* e = FindEntry(dtype);
  if (e == nullptr || !CpuHas(isa)) return nullptr;
  return &KernelTable(isa)[e - kEntries];
}

}  // namespace ggml_dot

const QuantKernel* GgmlQuantKernel(DType dtype) { return GgmlQuantKernelAt(dtype, BestIsa()); }

DType GgmlActivationType(DType weight_type) {
  const Entry* e = FindEntry(weight_type);
  MIXQ_CHECK(e != nullptr && "GgmlActivationType: not a ggml kernel type");
  return e->activation;
}

}  // namespace mixq
