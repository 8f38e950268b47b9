// Scalar dequantizers of ggml's block types, written from the layouts in ggml_blocks.h.
//
// The float expressions deliberately keep ggml's shapes (e.g. `dl * q - ml` with dl = d * scale
// precomputed, `d * scale * q` left to right) because a different association changes the last bit.
#include "mixq/formats/ggml_dequant.h"

#include <cstring>

#include "mixq/base/check.h"
#include "mixq/formats/float16.h"
#include "mixq/formats/ggml_blocks.h"

namespace mixq {
namespace {

using namespace ggml;

// Blocks are read by memcpy into a local struct so no unaligned or aliasing access happens.
template <typename Block>
Block LoadBlock(const void* src, int64_t index) {
  Block block;
  std::memcpy(&block, static_cast<const std::byte*>(src) + static_cast<size_t>(index) * sizeof(Block),
              sizeof(Block));
  return block;
}

void DequantizeQ4_0(const void* src, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, y += kQK) {
    const auto b = LoadBlock<BlockQ4_0>(src, i);
    const float d = F16ToF32(b.d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>((b.qs[j] & 0x0f) - 8) * d;
      y[j + kQK / 2] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
    }
  }
}

void DequantizeQ4_1(const void* src, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, y += kQK) {
    const auto b = LoadBlock<BlockQ4_1>(src, i);
    const float d = F16ToF32(b.d);
    const float m = F16ToF32(b.m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>(b.qs[j] & 0x0f) * d + m;
      y[j + kQK / 2] = static_cast<float>(b.qs[j] >> 4) * d + m;
    }
  }
}

uint32_t HighBits(const uint8_t qh[4]) {
  uint32_t bits;
  std::memcpy(&bits, qh, sizeof bits);  // little-endian host: bit j = weight j
  return bits;
}

void DequantizeQ5_0(const void* src, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, y += kQK) {
    const auto b = LoadBlock<BlockQ5_0>(src, i);
    const float d = F16ToF32(b.d);
    const uint32_t qh = HighBits(b.qh);
    for (int j = 0; j < kQK / 2; ++j) {
      const int high0 = static_cast<int>((qh >> j) & 1u) << 4;
      const int high1 = static_cast<int>((qh >> (j + kQK / 2)) & 1u) << 4;
      y[j] = static_cast<float>(((b.qs[j] & 0x0f) | high0) - 16) * d;
      y[j + kQK / 2] = static_cast<float>(((b.qs[j] >> 4) | high1) - 16) * d;
    }
  }
}

void DequantizeQ5_1(const void* src, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, y += kQK) {
    const auto b = LoadBlock<BlockQ5_1>(src, i);
    const float d = F16ToF32(b.d);
    const float m = F16ToF32(b.m);
    const uint32_t qh = HighBits(b.qh);
    for (int j = 0; j < kQK / 2; ++j) {
      const int high0 = static_cast<int>((qh >> j) & 1u) << 4;
      const int high1 = static_cast<int>((qh >> (j + kQK / 2)) & 1u) << 4;
      y[j] = static_cast<float>((b.qs[j] & 0x0f) | high0) * d + m;
      y[j + kQK / 2] = static_cast<float>((b.qs[j] >> 4) | high1) * d + m;
    }
  }
}

void DequantizeQ8_0(const void* src, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, y += kQK) {
    const auto b = LoadBlock<BlockQ8_0>(src, i);
    const float d = F16ToF32(b.d);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
  }
}

void DequantizeQ2_K(const void* src, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    const auto b = LoadBlock<BlockQ2_K>(src, i);
    const float d = F16ToF32(b.d);
    const float dmin = F16ToF32(b.dmin);
    int sub = 0;
    for (int half = 0; half < 2; ++half) {
      const uint8_t* q = b.qs + 32 * half;
      for (int shift = 0; shift < 8; shift += 2) {
        for (int part = 0; part < 2; ++part, ++sub) {  // two 16-weight sub-blocks per byte column
          const float dl = d * static_cast<float>(b.scales[sub] & 0x0f);
          const float ml = dmin * static_cast<float>(b.scales[sub] >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[16 * part + l] >> shift) & 3) - ml;
        }
      }
    }
  }
}

// Scale s (0..15) of a Q3_K block, a 6-bit value stored in two places (see BlockQ3_K).
int Q3KScale(const uint8_t scales[kKScaleSize], int s) {
  const int low = s < 8 ? (scales[s] & 0x0f) : (scales[s - 8] >> 4);
  const int high = (scales[8 + s % 4] >> (2 * (s / 4))) & 3;
  return low | (high << 4);
}

void DequantizeQ3_K(const void* src, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    const auto b = LoadBlock<BlockQ3_K>(src, i);
    const float d = F16ToF32(b.d);
    int sub = 0;
    int mask_bit = 0;
    for (int half = 0; half < 2; ++half) {
      const uint8_t* q = b.qs + 32 * half;
      for (int shift = 0; shift < 8; shift += 2, ++mask_bit) {
        for (int part = 0; part < 2; ++part, ++sub) {
          const float dl = d * static_cast<float>(Q3KScale(b.scales, sub) - 32);
          for (int l = 0; l < 16; ++l) {
            const int idx = 16 * part + l;
            const int low = (q[idx] >> shift) & 3;
            const int minus = (b.hmask[idx] >> mask_bit) & 1 ? 0 : 4;
            *y++ = dl * static_cast<float>(low - minus);
          }
        }
      }
    }
  }
}

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block s (0..7) of a Q4_K/Q5_K block.
void ScaleMinK4(const uint8_t q[kKScaleSize], int s, uint8_t* scale, uint8_t* min) {
  if (s < 4) {
    *scale = q[s] & 63;
    *min = q[s + 4] & 63;
  } else {
    *scale = static_cast<uint8_t>((q[s + 4] & 0x0f) | ((q[s - 4] >> 6) << 4));
    *min = static_cast<uint8_t>((q[s + 4] >> 4) | ((q[s] >> 6) << 4));
  }
}

// The scales and mins of the two 32-value sub-blocks of 64-value chunk `chunk` of a Q4_K/Q5_K block.
struct KChunkScales {
  float d1, m1, d2, m2;
};
KChunkScales ChunkScales(const uint8_t q[kKScaleSize], float d, float dmin, int chunk) {
  uint8_t sc1, m1, sc2, m2;
  ScaleMinK4(q, 2 * chunk, &sc1, &m1);
  ScaleMinK4(q, 2 * chunk + 1, &sc2, &m2);
  return {d * static_cast<float>(sc1), dmin * static_cast<float>(m1), d * static_cast<float>(sc2),
          dmin * static_cast<float>(m2)};
}

void DequantizeQ4_K(const void* src, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    const auto b = LoadBlock<BlockQ4_K>(src, i);
    const float d = F16ToF32(b.d);
    const float dmin = F16ToF32(b.dmin);
    for (int chunk = 0; chunk < 4; ++chunk) {
      const uint8_t* q = b.qs + 32 * chunk;
      const auto [d1, m1, d2, m2] = ChunkScales(b.scales, d, dmin, chunk);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0x0f) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void DequantizeQ5_K(const void* src, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    const auto b = LoadBlock<BlockQ5_K>(src, i);
    const float d = F16ToF32(b.d);
    const float dmin = F16ToF32(b.dmin);
    for (int chunk = 0; chunk < 4; ++chunk) {
      const uint8_t* ql = b.qs + 32 * chunk;
      const auto [d1, m1, d2, m2] = ChunkScales(b.scales, d, dmin, chunk);
      const int bit_lo = 2 * chunk, bit_hi = 2 * chunk + 1;
      for (int l = 0; l < 32; ++l) {
        const int q = (ql[l] & 0x0f) + (((b.qh[l] >> bit_lo) & 1) << 4);
        *y++ = d1 * static_cast<float>(q) - m1;
      }
      for (int l = 0; l < 32; ++l) {
        const int q = (ql[l] >> 4) + (((b.qh[l] >> bit_hi) & 1) << 4);
        *y++ = d2 * static_cast<float>(q) - m2;
      }
    }
  }
}

void DequantizeQ6_K(const void* src, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    const auto b = LoadBlock<BlockQ6_K>(src, i);
    const float d = F16ToF32(b.d);
    for (int half = 0; half < 2; ++half, y += 128) {
      const uint8_t* ql = b.ql + 64 * half;
      const uint8_t* qh = b.qh + 32 * half;
      const int8_t* sc = b.scales + 8 * half;
      for (int l = 0; l < 32; ++l) {
        const int s = l / 16;
        const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * static_cast<float>(sc[s]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[s + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[s + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[s + 6]) * static_cast<float>(q4);
      }
    }
  }
}

void DequantizeQ8_K(const void* src, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, y += kQK_K) {
    const auto b = LoadBlock<BlockQ8_K>(src, i);
    for (int j = 0; j < kQK_K; ++j) y[j] = b.d * static_cast<float>(b.qs[j]);
  }
}

void DequantizeIQ4_NL(const void* src, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, y += kQK) {
    const auto b = LoadBlock<BlockIQ4_NL>(src, i);
    const float d = F16ToF32(b.d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * static_cast<float>(kIq4nlValues[b.qs[j] & 0x0f]);
      y[j + kQK / 2] = d * static_cast<float>(kIq4nlValues[b.qs[j] >> 4]);
    }
  }
}

void DequantizeIQ4_XS(const void* src, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    const auto b = LoadBlock<BlockIQ4_XS>(src, i);
    const float d = F16ToF32(b.d);
    for (int s = 0; s < kQK_K / 32; ++s, y += 32) {
      const int scale = ((b.scales_l[s / 2] >> (4 * (s % 2))) & 0x0f) | (((b.scales_h >> (2 * s)) & 3) << 4);
      const float dl = d * static_cast<float>(scale - 32);
      const uint8_t* qs = b.qs + 16 * s;
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * static_cast<float>(kIq4nlValues[qs[j] & 0x0f]);
        y[j + 16] = dl * static_cast<float>(kIq4nlValues[qs[j] >> 4]);
      }
    }
  }
}

using DequantizeFn = void (*)(const void*, float*, int64_t);

DequantizeFn Dequantizer(DType dtype) {
  switch (dtype) {
    case DType::kQ4_0: return DequantizeQ4_0;
    case DType::kQ4_1: return DequantizeQ4_1;
    case DType::kQ5_0: return DequantizeQ5_0;
    case DType::kQ5_1: return DequantizeQ5_1;
    case DType::kQ8_0: return DequantizeQ8_0;
    case DType::kQ2_K: return DequantizeQ2_K;
    case DType::kQ3_K: return DequantizeQ3_K;
    case DType::kQ4_K: return DequantizeQ4_K;
    case DType::kQ5_K: return DequantizeQ5_K;
    case DType::kQ6_K: return DequantizeQ6_K;
    case DType::kQ8_K: return DequantizeQ8_K;
    case DType::kIQ4_NL: return DequantizeIQ4_NL;
    case DType::kIQ4_XS: return DequantizeIQ4_XS;
    default: return nullptr;
  }
}

}  // namespace

bool HasDequantizer(DType dtype) { return Dequantizer(dtype) != nullptr; }

void DequantizeRow(DType dtype, const void* src, float* dst, int64_t n) {
  const DequantizeFn fn = Dequantizer(dtype);
  MIXQ_CHECK(fn != nullptr && "DequantizeRow: no dequantizer for this dtype");
  const int64_t block_size = Traits(dtype).block_size;
  MIXQ_CHECK_GE(n, 0);
  MIXQ_CHECK_EQ(n % block_size, int64_t{0});
  fn(src, dst, n / block_size);
}

}  // namespace mixq
