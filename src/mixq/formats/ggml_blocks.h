// The block structs of llama.cpp's quantized types, byte for byte as ggml lays them out in GGUF files.
//
// Each struct mirrors one `block_*` of ggml-common.h; a static_assert ties its size to the bytes-per-block
// column of tensor/dtype.h's traits table, so the table, these structs and the files cannot drift apart.
// All fields are little-endian (as on every host mixq builds for); `uint16_t` scales are IEEE half (F16)
// bits, decoded with F16ToF32. docs/ggml-formats.md draws the same layouts with byte offsets.
// Every struct has only byte-sized or naturally aligned fields so that no padding appears; still, code
// should read blocks through memcpy or these structs at the block's own address (GGUF aligns tensor data
// to 32 bytes, and every block size here is even, so the uint16 fields are always 2-byte aligned).
#pragma once

#include <cstddef>
#include <cstdint>

#include "mixq/tensor/dtype.h"

namespace mixq::ggml {

// Elements per block of the legacy types (Q4_0 ... Q8_0, IQ4_NL).
inline constexpr int kQK = 32;
// Elements per super-block of the k-quants and IQ4_XS.
inline constexpr int kQK_K = 256;
// Bytes of the packed 6-bit scales and mins of Q4_K/Q5_K (and the 6-bit scales of Q3_K).
inline constexpr int kKScaleSize = 12;

// Layout: Q4_0 — 32 weights, one F16 scale d and 32 unsigned 4-bit codes q. Byte j of qs holds weight j
// in its low nibble and weight j+16 in its high nibble (not j and j+1). Value = (q - 8) * d.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};

// Layout: Q4_1 — as Q4_0 plus an F16 offset m: value = q * d + m (asymmetric, no -8).
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};

// Layout: Q5_0 — Q4_0's nibbles plus a fifth bit per weight: qh is one little-endian uint32 whose bit j
// is the high bit of weight j (j = 0..31). Value = (q - 16) * d with q in 0..31.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};

// Layout: Q5_1 — as Q5_0 plus an F16 offset m: value = q * d + m.
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};

// Layout: Q8_0 — 32 signed bytes and one F16 scale: value = q * d.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};

// Layout: Q8_1 — the activation side of Q4_1 and Q5_1 (never stored in model files): Q8_0's F16 scale
// and 32 signed bytes, plus s = F16(d * sum(qs)) with d the unrounded float scale, so that a weight
// block's offset m contributes m * s without a pass over the activations.
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[kQK];
};

// Layout: Q2_K — a 256-weight super-block of 16 sub-blocks of 16. scales[s] holds sub-block s's 4-bit
// scale (low nibble) and 4-bit min (high nibble); value = d * scale * q - dmin * min, q in 0..3. The
// 2-bit codes are in two 128-weight halves of 32 bytes each: within a half, weight 32*k + l (k = 0..3,
// l = 0..31) is bits 2k..2k+1 of byte l. Sub-blocks run in weight order (sub-block s = weights 16s..).
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  uint16_t d;
  uint16_t dmin;
};

// Layout: Q3_K — 16 sub-blocks of 16 weights, symmetric: value = d * (scale - 32) * (q - 4), q in 0..7.
// The low 2 bits of q are packed as in Q2_K; the third bit of weight 128h + 32k + l (half h, k = 0..3,
// l = 0..31) is bit 4h + k of hmask[l], and a SET bit means "no -4" (so q_low - 4 when the bit is 0).
// The 16 6-bit scales: low 4 bits of scale s are scales[s] & 15 for s < 8, scales[s-8] >> 4 for s >= 8;
// the high 2 bits are bits 2*(s/4)..+1 of scales[8 + s%4].
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[kKScaleSize];
  uint16_t d;
};

// Layout: Q4_K — 8 sub-blocks of 32 weights, asymmetric: value = d * scale * q - dmin * min, q in 0..15.
// Eight 6-bit scales and eight 6-bit mins share 12 bytes (ggml's get_scale_min_k4): for s < 4, scale =
// scales[s] & 63 and min = scales[s+4] & 63; for s >= 4, scale = (scales[s+4] & 15) | (scales[s-4] >> 6)
// << 4 and min = (scales[s+4] >> 4) | (scales[s] >> 6) << 4. The nibbles come in four 64-weight chunks of
// 32 bytes: weight 64c + l is the low nibble of qs[32c + l], weight 64c + 32 + l its high nibble.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qs[kQK_K / 2];
};

// Sub-block j's 6-bit scale and min into / out of those 12 bytes (Q4_K and Q5_K). Put ORs the high bits
// of j >= 4 into bytes that j - 4 wrote: start from zeroed bytes and put j = 0..7 in order.
inline void PutScaleMinK4(uint8_t* q, int j, uint8_t ls, uint8_t lm) {
  if (j < 4) {
    q[j] = ls;
    q[j + 4] = lm;
  } else {
    q[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
    q[j - 4] = static_cast<uint8_t>(q[j - 4] | ((ls >> 4) << 6));
    q[j] = static_cast<uint8_t>(q[j] | ((lm >> 4) << 6));
  }
}
inline void GetScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Layout: Q5_K — Q4_K plus a fifth bit per weight (q in 0..31): the high bit of weight 64c + l is bit 2c
// of qh[l], that of weight 64c + 32 + l is bit 2c + 1 of qh[l] (l = 0..31).
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};

// Layout: Q6_K — 16 sub-blocks of 16 weights, symmetric: value = d * scale * (q - 32), q in 0..63, with
// signed 8-bit scales. Two 128-weight halves; in half h (ql += 64h, qh += 32h), for l = 0..31: weight
// 128h + l = low nibble of ql[l], weight +32 = low nibble of ql[l+32], weight +64 = high nibble of ql[l],
// weight +96 = high nibble of ql[l+32]; their top 2 bits are bits 0-1, 2-3, 4-5, 6-7 of qh[l].
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};

// Layout: Q8_K — the activation side of the k-quant dot products (never stored in model files): an F32
// scale, 256 signed bytes, and the sums of each 16-weight group (used to apply the mins cheaply).
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];
};

// The 16 non-uniform levels of IQ4_NL and IQ4_XS (ggml's kvalues_iq4nl), denser near zero to fit the
// bell-shaped weight distribution.
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

// Layout: IQ4_NL — Q4_0's layout (F16 d, weight j low nibble / j+16 high nibble of qs[j]) but the code
// indexes kIq4nlValues: value = d * kIq4nlValues[q].
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t qs[kQK / 2];
};

// Layout: IQ4_XS — 8 sub-blocks of 32 weights coded as IQ4_NL, with a 6-bit sub-block scale: scale of
// sub-block s = ((scales_l[s/2] >> 4*(s%2)) & 15) | ((scales_h >> 2s) & 3) << 4, and value =
// d * (scale - 32) * kIq4nlValues[q]. Sub-block s's 16 bytes are qs[16s..16s+15], packed as IQ4_NL.
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[kQK_K / 64];
  uint8_t qs[kQK_K / 2];
};

// The block sizes are ggml's, i.e. the bytes-per-block column of dtype.cc's table; that table is not
// constexpr, so ggml_dequant_test.cc also compares each sizeof with Traits(dtype).block_bytes at run time.
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockIQ4_XS) == 136);

}  // namespace mixq::ggml
