// The INT kernels' table, activation layout and scalar references (the oracle for the AVX2 and AVX-512 VNNI paths).
#include "mixq/kernels/int_dot.h"

#include "mixq/kernels/cpu_features.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "mixq/base/check.h"
#include "mixq/formats/float16.h"
#include "mixq/kernels/int_dot_avx2.h"
#include "mixq/kernels/int_dot_avx512.h"
#include "mixq/kernels/interleaved_rows.h"
#include "mixq/tensor/int_layout.h"

namespace mixq {
namespace {

int64_t GroupLength(int64_t n, int64_t group) { return (group == 0 || group > n) ? n : group; }

void QuantizeActivationRef(const float* x, void* dst, int64_t n, int64_t group) {
  const int64_t g = GroupLength(n, group);
  auto* block = static_cast<IntActivationBlock*>(dst);
  for (int64_t start = 0; start < n; start += g) {
    const int64_t len = std::min(g, n - start);
    for (int64_t i = 0; i < len; i += kIntActivationBlockSize) {
      QuantizeIntActivationBlockRef(x + start + i, std::min(kIntActivationBlockSize, len - i), block++);
    }
  }
  WriteIntActivationGroupSums(dst, n, group);
}

void QuantizeActivation(const float* x, void* dst, int64_t n, int64_t group) {
  if (IntDotHasAvx2()) {
    int_dot_avx2::QuantizeActivation(x, dst, n, group);
  } else {
    QuantizeActivationRef(x, dst, n, group);
  }
}

// Group k of a stored row: its scale, the zero-point its codes are read against, and where its codes are.
struct StoredGroup {
  float scale;
  int zero;
  const uint8_t* codes;
  int64_t len;
};

template <int kBits, bool kSym>
StoredGroup ReadGroup(const uint8_t* row, const IntRowLayout& layout, int64_t k) {
  uint16_t scale_bits;
  std::memcpy(&scale_bits, row + 2 * k, sizeof(scale_bits));
  const int zero = kSym ? layout.SymmetricZero() : static_cast<int>(ReadPackedCode(row + layout.zeros_offset, k, kBits));
  return {F16ToF32(scale_bits), zero, row + layout.GroupCodesOffset(k), layout.GroupLength(k)};
}

template <int kBits, bool kSym>
float DotRef(const void* w_row, const void* activation, int64_t n, int64_t group) {
  const IntRowLayout layout(*IntDType(kBits, kSym), n, group);
  const auto* row = static_cast<const uint8_t*>(w_row);
  const auto* block = static_cast<const IntActivationBlock*>(activation);
  double total = 0.0;
  for (int64_t k = 0; k < layout.n_groups; ++k) {
    const StoredGroup g = ReadGroup<kBits, kSym>(row, layout, k);
    for (int64_t i0 = 0; i0 < g.len; i0 += kIntActivationBlockSize, ++block) {
      const int64_t block_len = std::min(kIntActivationBlockSize, g.len - i0);
      int32_t isum = 0;
      for (int64_t i = 0; i < block_len; ++i) {
        isum += (static_cast<int32_t>(ReadPackedCode(g.codes, i0 + i, kBits)) - g.zero) * block->q[i];
      }
      total += static_cast<double>(g.scale * block->scale) * isum;
    }
  }
  return static_cast<float>(total);
}

// ---- Packed GEMM format (packed_gemm.h): blocks follow the activation layout (32 values from each group
// start, the group's last block shorter). w = s * (c - z) = s * c' + m with c' a signed 8-bit code: c' = c
// and m = -s z up to 7 bits; for 8 bits c' = c - 128 and m = s (128 - z). Symmetric: c' = c - z, m = 0.
// The c of that rule: c' = c - IntUnpackBias (int_dot.h).
template <int kBits, bool kSym>
constexpr int UnpackBias() {
  return IntUnpackBias(kBits, kSym);
}

template <int kBits, bool kSym>
void UnpackRow(const void* w_row, int64_t n, int64_t group, int8_t* codes, float* d, float* m) {
  const IntRowLayout layout(*IntDType(kBits, kSym), n, group);
  const auto* row = static_cast<const uint8_t*>(w_row);
  constexpr int bias = UnpackBias<kBits, kSym>();
  int64_t b = 0;
  for (int64_t k = 0; k < layout.n_groups; ++k) {
    const StoredGroup g = ReadGroup<kBits, kSym>(row, layout, k);
    for (int64_t i0 = 0; i0 < g.len; i0 += kIntActivationBlockSize, ++b) {
      const int64_t block_len = std::min(kIntActivationBlockSize, g.len - i0);
      int8_t* c = codes + b * kIntActivationBlockSize;
      if constexpr (kBits == 4) {
        // Two codes a byte, low nibble first; a block starts on a byte (32 * 4 bits).
        const uint8_t* p = g.codes + i0 / 2;
        for (int64_t i = 0; i + 1 < block_len; i += 2) {
          c[i] = static_cast<int8_t>((p[i / 2] & 0x0f) - bias);
          c[i + 1] = static_cast<int8_t>((p[i / 2] >> 4) - bias);
        }
        if (block_len % 2) c[block_len - 1] = static_cast<int8_t>((p[block_len / 2] & 0x0f) - bias);
      } else if constexpr (kBits == 8) {
        for (int64_t i = 0; i < block_len; ++i) c[i] = static_cast<int8_t>(g.codes[i0 + i] - bias);
      } else {
        for (int64_t i = 0; i < block_len; ++i) {
          c[i] = static_cast<int8_t>(static_cast<int>(ReadPackedCode(g.codes, i0 + i, kBits)) - bias);
        }
      }
      std::fill(c + block_len, c + kIntActivationBlockSize, int8_t{0});
      d[b] = g.scale;
      m[b] = kSym ? 0.0f : g.scale * static_cast<float>(bias - g.zero);
    }
  }
}

int64_t PackedBlockCount(int64_t n, int64_t group) { return IntActivationBlockCount(n, group); }

void ExpandActivation(const void* activation, int64_t n, int64_t group, int8_t* q, float* scale, int32_t* sum,
                      float* msum) {
  const auto* block = static_cast<const IntActivationBlock*>(activation);
  for (int64_t b = 0; b < IntActivationBlockCount(n, group); ++b) {
    std::memcpy(q + b * kIntActivationBlockSize, block[b].q, kIntActivationBlockSize);
    scale[b] = block[b].scale;
    sum[b] = block[b].sum;
    msum[b] = block[b].scale * static_cast<float>(block[b].sum);
  }
}

template <int kBits, bool kSym>
const PackedGemmFormat kPackedFormat{static_cast<int>(kIntActivationBlockSize),
                                     !kSym,
                                     kBits,
                                     UnpackBias<kBits, kSym>(),  // c' + bias = c, the stored code
                                     PackedBlockCount,
                                     UnpackRow<kBits, kSym>,
                                     ExpandActivation};

size_t ActivationBytes(int64_t n, int64_t group) { return IntActivationBytes(n, group); }

const char* IsaName() { return CpuHasAvx512Vnni() ? "AVX512-VNNI" : IntDotHasAvx2() ? "AVX2" : "scalar"; }

template <int kBits, bool kSym>
void InterleaveInt(const void* rows, size_t row_bytes, int64_t n, int64_t group, void* dst) {
  IntInterleave(rows, row_bytes, n, group, kBits, kSym, dst);
}
template <int kBits, bool kSym>
void ExtractRowInt(const void* src, int lane, int64_t n, int64_t group, void* row) {
  IntExtractRow(src, lane, n, group, kBits, kSym, row);
}
template <int kBits, bool kSym>
void UnpackRowsInt(const void* src, int64_t n, int64_t group, int8_t* const codes[8], float* const d[8],
                   float* const m[8]) {
  IntUnpackRows(src, n, group, kBits, kSym, UnpackBias<kBits, kSym>(), codes, d, m);
}
template <int kBits, bool kSym>
size_t GroupBytesInt(int64_t n, int64_t group) {
  return IntInterleavedGroupBytes(n, group, kBits, kSym);
}
template <int kBits, bool kSym>
const InterleavedRows kInterleavedInt{IntInterleaveAccepts,      GroupBytesInt<kBits, kSym>,
                                      InterleaveInt<kBits, kSym>, ExtractRowInt<kBits, kSym>,
                                      UnpackRowsInt<kBits, kSym>, int_dot_avx2::DotGroups(kBits, kSym),
                                      int_dot_avx2::UnpackPanel(kBits, kSym)};
// The same layout with the AVX-512 VNNI group kernel, where there is one (INT4).
template <int kBits, bool kSym>
const InterleavedRows kInterleavedIntVnni{IntInterleaveAccepts,      GroupBytesInt<kBits, kSym>,
                                          InterleaveInt<kBits, kSym>, ExtractRowInt<kBits, kSym>,
                                          UnpackRowsInt<kBits, kSym>, int_dot_avx512::DotGroups(kBits, kSym),
                                          int_dot_avx2::UnpackPanel(kBits, kSym)};

template <int kBits, bool kSym>
QuantKernel MakeKernel() {
  QuantKernel k{};
  k.weight_type = *IntDType(kBits, kSym);
  k.activation_bytes = &ActivationBytes;
  k.quantize_activation = &QuantizeActivation;
  k.quantize_activation_ref = &QuantizeActivationRef;
  k.dot_ref = &DotRef<kBits, kSym>;
  if (CpuHasAvx512Vnni()) {
    k.dot = int_dot_avx512::Dot(kBits, kSym);
  } else {
    k.dot = IntDotHasAvx2() ? int_dot_avx2::Dot(kBits, kSym) : &DotRef<kBits, kSym>;
  }
  k.isa = &IsaName;
  if (CpuHasAvx512Vnni() || IntDotHasAvx2()) k.packed = &kPackedFormat<kBits, kSym>;
  // Interleaved decode rows wherever AVX2 runs, AVX-512 machines included: they beat the VNNI row walk
  // there (2-core Zen 4, tg64 medians of 3 alternating rounds: INT4-g128 48 -> 58 t/s, INT3-g128 31 ->
  // 57; ggml_dot.cc's MakeKernel). Except INT8 on AVX-512 VNNI: its byte runs need the AVX2 sign trick
  // (vpsignb per run), while `vpdpbusd` takes the biased codes as they are, and the row walk stayed ahead
  // (INT8-pc 50 against 41 t/s, medians of 6 rounds).
  const bool row_walk_is_faster = kBits == 8 && CpuHasAvx512Vnni();
  if (IntDotHasAvx2() && !row_walk_is_faster) k.interleaved = &kInterleavedInt<kBits, kSym>;
  if (CpuHasAvx512Vnni() && int_dot_avx512::DotGroups(kBits, kSym) != nullptr) {
    k.interleaved = &kInterleavedIntVnni<kBits, kSym>;
  }
  return k;
}

template <bool kSym>
void AddKernels(std::array<QuantKernel, 14>& table, size_t offset) {
  table[offset + 0] = MakeKernel<2, kSym>();
  table[offset + 1] = MakeKernel<3, kSym>();
  table[offset + 2] = MakeKernel<4, kSym>();
  table[offset + 3] = MakeKernel<5, kSym>();
  table[offset + 4] = MakeKernel<6, kSym>();
  table[offset + 5] = MakeKernel<7, kSym>();
  table[offset + 6] = MakeKernel<8, kSym>();
}

}  // namespace

bool IntDotHasAvx2() { return CpuHasAvx2(); }

bool IntInterleaveAccepts(int64_t n, int64_t group) {
  const int64_t g = GroupLength(n, group);
  return n > 0 && g % interleaved::kBlockCodes == 0 && n % g == 0;
}

namespace {

// Where the parts of an interleaved INT2..INT8 group lie (int_dot.h).
struct IntGroupLayout {
  IntRowLayout row;
  size_t zeros = 0;        // offset of the zero-points
  size_t codes = 0;        // offset of the first block's runs
  size_t block_bytes = 0;  // one block of 8 rows
  int64_t blocks = 0;      // 32-code blocks per row
  size_t bytes = 0;        // the whole group: 8 * row_bytes for INT4 and INT8, a little more for INT5/6/7

  IntGroupLayout(int64_t n, int64_t group, int bits, bool symmetric)
      : row(*IntDType(bits, symmetric), n, group),
        zeros(16 * static_cast<size_t>(row.n_groups)),
        codes(zeros + (symmetric ? 0 : IntInterleavedZeroBytes(bits) * static_cast<size_t>(row.n_groups))),
        block_bytes(IntInterleavedBlockBytes(bits)),
        blocks(n / interleaved::kBlockCodes),
        bytes(std::max(8 * row.row_bytes, codes + static_cast<size_t>(blocks) * block_bytes)) {
    MIXQ_CHECK(bits >= 2 && bits <= 8);
  }
  // Row r's zero-point of weight group k (a nibble for INT4, a byte for the wider codes).
  int Zero(const uint8_t* in, int64_t k, int r) const {
    if (row.bits != 4) return in[zeros + 8 * k + r];
    return (in[zeros + 4 * k + r / 2] >> (4 * (r % 2))) & 0x0f;
  }
  void PutZero(uint8_t* out, int64_t k, int r, uint32_t zero) const {
    if (row.bits != 4) {
      out[zeros + 8 * k + r] = static_cast<uint8_t>(zero);
    } else {
      out[zeros + 4 * k + r / 2] |= static_cast<uint8_t>(zero << (4 * (r % 2)));
    }
  }
};

// The 8 rows' 32 codes of 2 to 8 bits (8-bit ones as c - 128) into an interleaved block (crumb runs,
// nibble runs and high bits, or byte runs).
void PutRunBlock(const uint8_t codes[8][interleaved::kBlockCodes], int bits, uint8_t* block) {
  switch (bits) {
    case 2: interleaved::PutRunBlock<2>(codes, block); return;
    case 3: interleaved::PutRunBlock<3>(codes, block); return;
    case 4: interleaved::PutRunBlock<4>(codes, block); return;
    case 5: interleaved::PutRunBlock<5>(codes, block); return;
    case 6: interleaved::PutRunBlock<6>(codes, block); return;
    case 7: interleaved::PutRunBlock<7>(codes, block); return;
    case 8: interleaved::PutRunBlock<8>(codes, block); return;
  }
  MIXQ_CHECK(false);
}
void GetRunCodes(const uint8_t* block, int lane, int bits, uint8_t codes[interleaved::kBlockCodes]) {
  switch (bits) {
    case 2: interleaved::GetRunCodes<2>(block, lane, codes); return;
    case 3: interleaved::GetRunCodes<3>(block, lane, codes); return;
    case 4: interleaved::GetRunCodes<4>(block, lane, codes); return;
    case 5: interleaved::GetRunCodes<5>(block, lane, codes); return;
    case 6: interleaved::GetRunCodes<6>(block, lane, codes); return;
    case 7: interleaved::GetRunCodes<7>(block, lane, codes); return;
  }
  MIXQ_CHECK(false);
}

}  // namespace

size_t IntInterleavedGroupBytes(int64_t n, int64_t group, int bits, bool symmetric) {
  return IntGroupLayout(n, group, bits, symmetric).bytes;
}

void IntInterleave(const void* rows, size_t row_bytes, int64_t n, int64_t group, int bits, bool symmetric, void* dst) {
  const IntGroupLayout g(n, group, bits, symmetric);
  MIXQ_CHECK(IntInterleaveAccepts(n, group) && row_bytes >= g.row.row_bytes);
  auto* out = static_cast<uint8_t*>(dst);
  std::memset(out, 0, g.bytes);
  const auto row = [&](int r) { return static_cast<const uint8_t*>(rows) + r * row_bytes; };
  for (int r = 0; r < 8; ++r) {
    for (int64_t k = 0; k < g.row.n_groups; ++k) {
      std::memcpy(out + 16 * k + 2 * r, row(r) + 2 * k, 2);
      if (!symmetric) g.PutZero(out, k, r, ReadPackedCode(row(r) + g.row.zeros_offset, k, bits));
    }
  }
  // Groups hold whole blocks, so block b's codes are the rows' codes 32b... INT8's are kept as c - 128 so
  // the kernel's sign trick never saturates.
  for (int64_t b = 0; b < g.blocks; ++b) {
    uint8_t codes[8][interleaved::kBlockCodes];
    for (int r = 0; r < 8; ++r) {
      ReadPackedBlock(row(r) + g.row.codes_offset, b, bits, codes[r]);
      if (bits == 8) {
        for (uint8_t& c : codes[r]) c ^= 0x80u;
      }
    }
    PutRunBlock(codes, bits, out + g.codes + b * g.block_bytes);
  }
}

void IntUnpackRows(const void* src, int64_t n, int64_t group, int bits, bool symmetric, int bias,
                   int8_t* const codes[8], float* const d[8], float* const m[8]) {
  const IntGroupLayout g(n, group, bits, symmetric);
  const auto* in = static_cast<const uint8_t*>(src);
  const int64_t blocks_per_group = g.row.group / interleaved::kBlockCodes;
  int64_t b = 0;
  for (int64_t k = 0; k < g.row.n_groups; ++k) {
    for (int r = 0; r < 8; ++r) {
      // UnpackRow's d and m, from the same F16 scale and zero-point.
      uint16_t scale_bits;
      std::memcpy(&scale_bits, in + 16 * k + 2 * r, sizeof scale_bits);
      const float scale = F16ToF32(scale_bits);
      const int zero = symmetric ? g.row.SymmetricZero() : g.Zero(in, k, r);
      for (int64_t i = 0; i < blocks_per_group; ++i) {
        d[r][b + i] = scale;
        m[r][b + i] = symmetric ? 0.0f : scale * static_cast<float>(bias - zero);
      }
    }
    for (int64_t i = 0; i < blocks_per_group; ++i, ++b) {
      const uint8_t* block = in + g.codes + b * g.block_bytes;
      if (bits == 4) {
        interleaved::UnpackNibbleRuns(block, bias, codes, b * interleaved::kBlockCodes);
      } else if (bits != 8) {
        for (int r = 0; r < 8; ++r) {
          uint8_t c[interleaved::kBlockCodes];
          GetRunCodes(block, r, bits, c);
          for (int i = 0; i < interleaved::kBlockCodes; ++i) {
            codes[r][b * interleaved::kBlockCodes + i] = static_cast<int8_t>(c[i] - bias);
          }
        }
      } else {
        // Stored as c - 128, and INT8's bias is 128 either way (UnpackBias): the bytes as they are.
        MIXQ_CHECK_EQ(bias, 128);
        for (int r = 0; r < 8; ++r) {
          interleaved::GetByteRuns(reinterpret_cast<const int8_t*>(block), r, codes[r] + b * interleaved::kBlockCodes);
        }
      }
    }
  }
}

void IntExtractRow(const void* src, int lane, int64_t n, int64_t group, int bits, bool symmetric, void* dst) {
  const IntGroupLayout g(n, group, bits, symmetric);
  const auto* in = static_cast<const uint8_t*>(src);
  auto* row = static_cast<uint8_t*>(dst);
  std::memset(row, 0, g.row.row_bytes);
  for (int64_t k = 0; k < g.row.n_groups; ++k) {
    std::memcpy(row + 2 * k, in + 16 * k + 2 * lane, 2);
    if (!symmetric) WritePackedCode(row + g.row.zeros_offset, k, bits, static_cast<uint32_t>(g.Zero(in, k, lane)));
  }
  uint8_t* packed = row + g.row.codes_offset;
  for (int64_t b = 0; b < g.blocks; ++b) {
    const uint8_t* block = in + g.codes + b * g.block_bytes;
    uint8_t codes[interleaved::kBlockCodes];
    if (bits == 8) {
      int8_t centred[interleaved::kBlockCodes];
      interleaved::GetByteRuns(reinterpret_cast<const int8_t*>(block), lane, centred);
      for (int i = 0; i < interleaved::kBlockCodes; ++i) codes[i] = static_cast<uint8_t>(centred[i] + 128);
    } else {
      GetRunCodes(block, lane, bits, codes);
    }
    for (int i = 0; i < interleaved::kBlockCodes; ++i) WritePackedCode(packed, 32 * b + i, bits, codes[i]);
  }
}

int64_t IntActivationBlockCount(int64_t n, int64_t group) {
  if (n <= 0) return 0;
  const int64_t g = GroupLength(n, group);
  const int64_t per_group = (g + kIntActivationBlockSize - 1) / kIntActivationBlockSize;
  const int64_t rest = n % g;
  return (n / g) * per_group + (rest + kIntActivationBlockSize - 1) / kIntActivationBlockSize;
}

int64_t IntActivationGroupCount(int64_t n, int64_t group) {
  if (n <= 0) return 0;
  const int64_t g = GroupLength(n, group);
  return (n + g - 1) / g;
}

size_t IntActivationBytes(int64_t n, int64_t group) {
  return static_cast<size_t>(IntActivationBlockCount(n, group)) * sizeof(IntActivationBlock) +
         static_cast<size_t>(IntActivationGroupCount(n, group)) * sizeof(float);
}

void WriteIntActivationGroupSums(void* activation, int64_t n, int64_t group) {
  const auto* block = static_cast<const IntActivationBlock*>(activation);
  auto* out = reinterpret_cast<std::byte*>(static_cast<IntActivationBlock*>(activation) + IntActivationBlockCount(n, group));
  const int64_t g = GroupLength(n, group);
  for (int64_t start = 0; start < n; start += g, out += sizeof(float)) {
    const int64_t len = std::min(g, n - start);
    float sum = 0.0f;
    for (int64_t i = 0; i < len; i += kIntActivationBlockSize, ++block) {
      const float term = block->scale * static_cast<float>(block->sum);  // rounded before the add: no FMA
      sum += term;
    }
    std::memcpy(out, &sum, sizeof(sum));
  }
}

void QuantizeIntActivationBlockRef(const float* x, int64_t len, IntActivationBlock* block) {
  MIXQ_CHECK(len >= 1 && len <= kIntActivationBlockSize);
  // fmax ignores a NaN, as the AVX2 path's max does; NaN values then quantize to -127 in both.
  float amax = 0.0f;
  for (int64_t i = 0; i < len; ++i) amax = std::fmax(amax, std::fabs(x[i]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  int32_t sum = 0;
  std::memset(block->q, 0, sizeof(block->q));
  for (int64_t i = 0; i < len; ++i) {
    const float r = std::fmin(std::fmax(std::nearbyint(x[i] * id), -127.0f), 127.0f);
    block->q[i] = static_cast<int8_t>(r);
    sum += block->q[i];
  }
  block->scale = d;
  block->sum = sum;
}

const QuantKernel* IntQuantKernel(DType dtype) {
  static const std::array<QuantKernel, 14> table = [] {
    std::array<QuantKernel, 14> t{};
    AddKernels<false>(t, 0);
    AddKernels<true>(t, 7);
    return t;
  }();
  for (const QuantKernel& k : table) {
    if (k.weight_type == dtype) return &k;
  }
  return nullptr;
}

}  // namespace mixq
