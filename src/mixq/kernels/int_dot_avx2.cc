// AVX2 INT kernels: 32 codes of any bit width unpacked to bytes, multiplied with int8 activation blocks
// by maddubs/madd (exact per block in integers), scaled and summed in float, the zero-point term taken once
// per group from the activation row's group sums. Every function carries its own
// target attribute (no global -m flags); int_dot.cc calls them only when the CPU has AVX2, FMA and F16C.
#include "mixq/kernels/int_dot_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "mixq/base/check.h"
#include "mixq/kernels/int_dot.h"
#include "mixq/kernels/packed_gemm_internal.h"
#include "mixq/tensor/int_layout.h"

#define MIXQ_AVX2 __attribute__((target("avx2,fma,f16c")))
#define MIXQ_INT_UNPACK_TARGET MIXQ_AVX2
#include "mixq/kernels/int_dot_unpack.h"
#define MIXQ_INTERLEAVED_TARGET MIXQ_AVX2
#include "mixq/kernels/interleaved_rows.h"
#include "mixq/kernels/interleaved_rows_avx2.h"
#include "mixq/kernels/int_dot_groups.h"

namespace mixq::int_dot_avx2 {
namespace {

// One block's integer sum_i c_i q_i over 8 int32 lanes, codes as UnpackCodes gives them (8-bit codes as
// c - 128, so their zero-point is read as z - 128). The zero-point term is not here: the row walk takes it
// once per group from the activation row's group sums.
template <int kBits>
MIXQ_AVX2 inline __m256i BlockDot(const uint8_t* src, const IntActivationBlock& block) {
  const __m256i w = UnpackCodes<kBits>(src);
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.q));
  __m256i pairs;
  if constexpr (kBits == 8) {
    // |c - 128| <= 128 and |a| <= 127: a pair sums to at most 32512, inside int16.
    pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
  } else {
    pairs = _mm256_maddubs_epi16(w, a);  // codes <= 127: a pair sums to at most 32258
  }
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

// What the row walk needs of a row shape, remembered per thread for the last (n, group): MatMul calls the
// dot once per row with the same shape, and the layout (a traits lookup and divisions) costs a tenth of a
// 4096-wide row.
struct RowShape {
  IntRowLayout layout;
  int64_t blocks_per_group = 0;    // activation blocks of a full group
  int64_t last_group_blocks = 0;
  int64_t activation_blocks = 0;   // where the activation row's group sums start
  int64_t safe_groups = 0;         // leading full groups whose every block can be read with whole vector loads
  std::vector<float> scales;       // the row's group scales as floats (each call overwrites them)
};

template <int kBits, bool kSym>
RowShape& ShapeFor(int64_t n, int64_t group) {
  thread_local int64_t cached_n = -1, cached_group = -1;
  thread_local RowShape shape{IntRowLayout(*IntDType(kBits, kSym), 0, 0)};
  if (n != cached_n || group != cached_group) {
    const IntRowLayout layout(*IntDType(kBits, kSym), n, group);
    const auto blocks = [](int64_t len) { return (len + kIntActivationBlockSize - 1) / kIntActivationBlockSize; };
    shape.layout = layout;
    shape.blocks_per_group = blocks(layout.group);
    shape.last_group_blocks = layout.n_groups > 0 ? blocks(layout.GroupLength(layout.n_groups - 1)) : 0;
    shape.activation_blocks = IntActivationBlockCount(n, group);
    const int64_t full_groups = layout.group == 0 || n % layout.group == 0 ? layout.n_groups : layout.n_groups - 1;
    const auto last_read_end = [&](int64_t k) {
      return static_cast<int64_t>(layout.GroupCodesOffset(k)) + (shape.blocks_per_group - 1) * 4 * kBits + kReadBytes<kBits>;
    };
    shape.safe_groups = 0;
    while (shape.safe_groups < full_groups && last_read_end(shape.safe_groups) <= static_cast<int64_t>(layout.row_bytes)) {
      ++shape.safe_groups;
    }
    shape.scales.resize(static_cast<size_t>(layout.n_groups));
    cached_n = n;
    cached_group = group;
  }
  return shape;
}

// The zero-point a group's codes are read against, as BlockDot's codes see it (8-bit codes are c - 128).
template <int kBits, bool kSym>
inline int EffectiveZero(const uint8_t* row, const IntRowLayout& layout, int64_t k) {
  const int zero = kSym ? layout.SymmetricZero() : static_cast<int>(ReadPackedCode(row + layout.zeros_offset, k, kBits));
  return kBits == 8 ? zero - 128 : zero;
}

// Writes the row's group scales s_k to `scales` and returns sum_k s_k * z_k * G_k (the row's zero-point
// term), eight groups per step.
template <int kBits, bool kSym>
MIXQ_AVX2 inline float ScalesAndZeroTerm(const uint8_t* row, const IntRowLayout& layout, const float* group_sums,
                                         float* scales) {
  constexpr bool kHasZero = !(kBits == 8 && kSym);  // 8-bit symmetric codes are already signed around 0
  __m256 zero_acc = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= layout.n_groups; k += 8) {
    const __m256 s = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
    _mm256_storeu_ps(scales + k, s);
    if constexpr (kHasZero) {
      __m256 z;
      if constexpr (kSym) {
        z = _mm256_set1_ps(static_cast<float>(layout.SymmetricZero()));
      } else if constexpr (kBits == 4) {
        // Groups k..k+7 (k a multiple of 8) have their zero-points in the 4 bytes from k / 2, a nibble each.
        uint32_t packed;
        std::memcpy(&packed, row + layout.zeros_offset + k / 2, sizeof(packed));
        const __m256i nibbles = _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(packed)),
                                                  _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
        z = _mm256_cvtepi32_ps(_mm256_and_si256(nibbles, _mm256_set1_epi32(0xf)));
      } else {
        alignas(32) int32_t zeros[8];
        for (int j = 0; j < 8; ++j) zeros[j] = EffectiveZero<kBits, kSym>(row, layout, k + j);
        z = _mm256_cvtepi32_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(zeros)));
      }
      zero_acc = _mm256_fmadd_ps(_mm256_mul_ps(s, z), _mm256_loadu_ps(group_sums + k), zero_acc);
    }
  }
  float zero_term = HorizontalSum(zero_acc);
  for (; k < layout.n_groups; ++k) {
    uint16_t bits;
    std::memcpy(&bits, row + 2 * k, sizeof(bits));
    scales[k] = _cvtsh_ss(bits);
    if constexpr (kHasZero) {
      zero_term = std::fma(scales[k] * static_cast<float>(EffectiveZero<kBits, kSym>(row, layout, k)), group_sums[k], zero_term);
    }
  }
  return zero_term;
}

// sum_b d_b * sum_i c_i q_i over nb blocks from p, every load inside the row, in two chains so consecutive
// FMAs do not wait on each other.
template <int kBits>
MIXQ_AVX2 __attribute__((always_inline)) inline __m256 GroupBlocks(const uint8_t* p, const IntActivationBlock* block,
                                                                    int64_t nb) {
  constexpr int64_t kBlockBytes = 4 * kBits;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  const IntActivationBlock* const end = block + nb;
  for (; block + 2 <= end; block += 2, p += 2 * kBlockBytes) {
    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(BlockDot<kBits>(p, block[0])), _mm256_set1_ps(block[0].scale), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(BlockDot<kBits>(p + kBlockBytes, block[1])),
                           _mm256_set1_ps(block[1].scale), acc1);
  }
  if (block < end) acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(BlockDot<kBits>(p, *block)), _mm256_set1_ps(block->scale), acc0);
  return _mm256_add_ps(acc0, acc1);
}

// The dot product of one stored row with one activation row: per group k of weight scale s_k and zero z_k,
//   s_k * (sum_b d_b * sum_i c_i q_i  -  z_k * G_k),   G_k = sum_b d_b * sum_b(q)  (the activation row's
// group sums, int_dot.h). A block costs its unpack, maddubs + madd, one convert and one FMA; the scales
// and zero-point terms of eight groups take a few vector instructions (the zero-point per block, in
// integers, took 18% of the INT4-g128 time, and per-group scalar work as much again). Groups near the row's
// end, where a vector load could pass it, copy such blocks into a zeroed buffer first: the codes past the
// end meet zero activations.
template <int kBits, bool kSym>
MIXQ_AVX2 float DotImpl(const void* w_row, const void* activation, int64_t n, int64_t group) {
  constexpr int64_t kBlockBytes = 4 * kBits;  // 32 codes
  RowShape& shape = ShapeFor<kBits, kSym>(n, group);
  const IntRowLayout& layout = shape.layout;
  const auto* row = static_cast<const uint8_t*>(w_row);
  const auto* block = static_cast<const IntActivationBlock*>(activation);
  const auto* group_sums = reinterpret_cast<const float*>(block + shape.activation_blocks);
  float* scales = shape.scales.data();
  const float zero_term = ScalesAndZeroTerm<kBits, kSym>(row, layout, group_sums, scales);
  const uint8_t* codes = row + layout.codes_offset;
  const int64_t nb = shape.blocks_per_group;
  // Two totals alternate between groups: with one block a group, a single chain would wait on FMA latency.
  __m256 total0 = _mm256_setzero_ps(), total1 = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 2 <= shape.safe_groups; k += 2) {
    total0 = _mm256_fmadd_ps(GroupBlocks<kBits>(codes, block, nb), _mm256_set1_ps(scales[k]), total0);
    total1 = _mm256_fmadd_ps(GroupBlocks<kBits>(codes + layout.group_code_bytes, block + nb, nb),
                             _mm256_set1_ps(scales[k + 1]), total1);
    codes += 2 * layout.group_code_bytes;
    block += 2 * nb;
  }
  if (k < shape.safe_groups) {
    total0 = _mm256_fmadd_ps(GroupBlocks<kBits>(codes, block, nb), _mm256_set1_ps(scales[k]), total0);
    codes += layout.group_code_bytes;
    block += nb;
    ++k;
  }
  const uint8_t* row_end = row + layout.row_bytes;
  alignas(32) uint8_t tail[64];
  for (; k < layout.n_groups; ++k, codes += layout.group_code_bytes) {
    const int64_t group_blocks = k + 1 < layout.n_groups ? nb : shape.last_group_blocks;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < group_blocks; ++b, ++block) {
      const uint8_t* src = codes + b * kBlockBytes;
      if (src + kReadBytes<kBits> > row_end) {
        std::memset(tail, 0, sizeof(tail));
        std::memcpy(tail, src, static_cast<size_t>(row_end - src));
        src = tail;
      }
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(BlockDot<kBits>(src, *block)), _mm256_set1_ps(block->scale), acc);
    }
    total0 = _mm256_fmadd_ps(acc, _mm256_set1_ps(scales[k]), total0);
  }
  return HorizontalSum(_mm256_add_ps(total0, total1)) - zero_term;
}

MIXQ_AVX2 void QuantizeFullBlock(const float* x, IntActivationBlock* block) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 zero = _mm256_setzero_ps();
  __m256 v[4];
  __m256 amax = zero;
  for (int j = 0; j < 4; ++j) {
    v[j] = _mm256_loadu_ps(x + 8 * j);
    // max(|x|, 0) first: a NaN lane becomes 0 here, as std::fmax ignores NaN in the reference.
    amax = _mm256_max_ps(amax, _mm256_max_ps(_mm256_andnot_ps(sign, v[j]), zero));
  }
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  const float d = _mm_cvtss_f32(m) / 127.0f;
  const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  __m256i q[4];
  __m256i sum = _mm256_setzero_si256();
  for (int j = 0; j < 4; ++j) {
    const __m256 r = _mm256_round_ps(_mm256_mul_ps(v[j], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // max(r, -127) takes -127 for a NaN r, as std::fmax does in the reference.
    q[j] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
    sum = _mm256_add_epi32(sum, q[j]);
  }
  const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
  const __m256i ordered = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(block->q), ordered);
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  block->scale = d;
  block->sum = _mm_cvtsi128_si32(s);
}

// One 32-code block of 8 interleaved INT2..INT8 rows against one activation block: the 8 rows' sum
// c_i q_i as floats. INT8 blocks hold c - 128 (the sign trick's `vpmaddubsw` then never saturates), so
// 128 * sum(q) is added back.
template <int kBits>
MIXQ_AVX2 inline __m256 BlockDotInt(const uint8_t* runs, const IntActivationBlock& block) {
  if constexpr (kBits < 4) {
    // Crumb runs: 8 code vectors of 4 codes per row, 8 `vpmaddubsw` summed in int16 (<= 8 * 2 * 7 * 127).
    __m256i u[8];
    interleaved::CrumbRunCodes<kBits>(runs, u);
    __m256i pairs = _mm256_maddubs_epi16(u[0], interleaved::BroadcastDword(block.q));
    for (int s = 1; s < 8; ++s) {
      pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(u[s], interleaved::BroadcastDword(block.q + 4 * s)));
    }
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  } else if constexpr (kBits == 4) {
    __m256i dots[1];
    interleaved::NibbleRunsDot<1>(&runs, block.q, dots);
    return _mm256_cvtepi32_ps(dots[0]);
  } else if constexpr (kBits == 5) {
    __m256i pairs[2];
    interleaved::FiveBitRunsPairs(runs, block.q, pairs);
    const __m256i ones = _mm256_set1_epi16(1);
    return _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_madd_epi16(pairs[0], ones), _mm256_madd_epi16(pairs[1], ones)));
  } else if constexpr (kBits == 7) {
    return _mm256_cvtepi32_ps(interleaved::SevenBitRunsDot(runs, block.q));
  } else if constexpr (kBits == 6) {
    __m256i low[2], high[2];
    interleaved::SixBitRunsPairs(runs, block.q, low, high);
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i dots = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(low[0], ones), _mm256_madd_epi16(low[1], ones)),
                                          _mm256_add_epi32(_mm256_madd_epi16(high[0], ones), _mm256_madd_epi16(high[1], ones)));
    return _mm256_cvtepi32_ps(dots);
  } else {
    const __m256i dots = interleaved::ByteRunsDot(reinterpret_cast<const int8_t*>(runs), block.q);
    return _mm256_cvtepi32_ps(_mm256_add_epi32(dots, _mm256_set1_epi32(128 * block.sum)));
  }
}

// BlockDotInt as the shared group walk's block kernel (int_dot_groups.h).
template <int kBits>
struct BlockDotAvx2 {
  MIXQ_AVX2 static __m256 Dot(const uint8_t* runs, const IntActivationBlock& block) {
    return BlockDotInt<kBits>(runs, block);
  }
};

}  // namespace

// Per weight group k the 8 rows' d = s_k and m = s_k (IntUnpackBias - z_k) (0 when symmetric), then the
// group's blocks' codes straight from their runs.
template <int kBits, bool kSym>
MIXQ_AVX2 void UnpackPanelImpl(const void* src, int64_t n, int64_t group, int bias, uint8_t* panel) {
  const IntRowLayout layout(*IntDType(kBits, kSym), n, group);
  const int64_t blocks_per_group = layout.group / interleaved::kBlockCodes;
  const size_t zeros = 16 * static_cast<size_t>(layout.n_groups);
  const size_t codes = zeros + (kSym ? 0 : IntInterleavedZeroBytes(kBits) * static_cast<size_t>(layout.n_groups));
  constexpr int kUnpackBias = IntUnpackBias(kBits, kSym);
  constexpr size_t kBlockBytes = packed_gemm::PanelBlockBytes(kIntActivationBlockSize);
  // Panel byte = c - kUnpackBias + bias; INT8's runs hold c - 128.
  const __m256i delta = _mm256_set1_epi8(static_cast<char>(bias - kUnpackBias + (kBits == 8 ? 128 : 0)));
  const auto* x = static_cast<const uint8_t*>(src);
  int64_t b = 0;
  for (int64_t k = 0; k < layout.n_groups; ++k) {
    const __m256 s = interleaved::RowScales(x + 16 * k);
    __m256 m = _mm256_setzero_ps();
    if constexpr (!kSym) {
      __m256i z;
      if constexpr (kBits == 4) {
        uint32_t packed;
        std::memcpy(&packed, x + zeros + 4 * k, sizeof packed);
        z = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(packed)),
                                               _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                             _mm256_set1_epi32(0xf));
      } else {
        z = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + zeros + 8 * k)));
      }
      m = _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_set1_epi32(kUnpackBias), z)));
    }
    for (int64_t i = 0; i < blocks_per_group; ++i, ++b) {
      uint8_t* out = panel + b * kBlockBytes;
      interleaved::RunCodesToPanel<kBits>(x + codes + b * IntInterleavedBlockBytes(kBits), delta, out, out + 128);
      interleaved::StorePanelScales(out, kIntActivationBlockSize, s, m);
    }
  }
}

UnpackPanelFn UnpackPanel(int bits, bool symmetric) {
  switch (bits) {
    case 2: return symmetric ? &UnpackPanelImpl<2, true> : &UnpackPanelImpl<2, false>;
    case 3: return symmetric ? &UnpackPanelImpl<3, true> : &UnpackPanelImpl<3, false>;
    case 4: return symmetric ? &UnpackPanelImpl<4, true> : &UnpackPanelImpl<4, false>;
    case 5: return symmetric ? &UnpackPanelImpl<5, true> : &UnpackPanelImpl<5, false>;
    case 6: return symmetric ? &UnpackPanelImpl<6, true> : &UnpackPanelImpl<6, false>;
    case 7: return symmetric ? &UnpackPanelImpl<7, true> : &UnpackPanelImpl<7, false>;
    case 8: return symmetric ? &UnpackPanelImpl<8, true> : &UnpackPanelImpl<8, false>;
  }
  MIXQ_CHECK(false);
  return nullptr;
}

DotGroupsFn DotGroups(int bits, bool symmetric) {
  switch (bits) {
    case 2: return int_dot_groups::DotGroupsFor<2, BlockDotAvx2<2>>(symmetric);
    case 3: return int_dot_groups::DotGroupsFor<3, BlockDotAvx2<3>>(symmetric);
    case 4: return int_dot_groups::DotGroupsFor<4, BlockDotAvx2<4>>(symmetric);
    case 5: return int_dot_groups::DotGroupsFor<5, BlockDotAvx2<5>>(symmetric);
    case 6: return int_dot_groups::DotGroupsFor<6, BlockDotAvx2<6>>(symmetric);
    case 7: return int_dot_groups::DotGroupsFor<7, BlockDotAvx2<7>>(symmetric);
    case 8: return int_dot_groups::DotGroupsFor<8, BlockDotAvx2<8>>(symmetric);
  }
  MIXQ_CHECK(false);
  return nullptr;
}

DotFn Dot(int bits, bool symmetric) {
  static constexpr std::array<DotFn, 7> kAsym = {&DotImpl<2, false>, &DotImpl<3, false>, &DotImpl<4, false>,
                                                 &DotImpl<5, false>, &DotImpl<6, false>, &DotImpl<7, false>,
                                                 &DotImpl<8, false>};
  static constexpr std::array<DotFn, 7> kSymm = {&DotImpl<2, true>, &DotImpl<3, true>, &DotImpl<4, true>,
                                                 &DotImpl<5, true>, &DotImpl<6, true>, &DotImpl<7, true>,
                                                 &DotImpl<8, true>};
  MIXQ_CHECK(bits >= 2 && bits <= 8);
  return symmetric ? kSymm[static_cast<size_t>(bits - 2)] : kAsym[static_cast<size_t>(bits - 2)];
}

MIXQ_AVX2 void QuantizeActivation(const float* x, void* dst, int64_t n, int64_t group) {
  const int64_t g = (group == 0 || group > n) ? n : group;
  auto* block = static_cast<IntActivationBlock*>(dst);
  for (int64_t start = 0; start < n; start += g) {
    const int64_t len = std::min(g, n - start);
    for (int64_t i = 0; i < len; i += kIntActivationBlockSize, ++block) {
      if (len - i >= kIntActivationBlockSize) {
        QuantizeFullBlock(x + start + i, block);
      } else {
        QuantizeIntActivationBlockRef(x + start + i, len - i, block);
      }
    }
  }
  WriteIntActivationGroupSums(dst, n, group);
}

}  // namespace mixq::int_dot_avx2
