// Matrix products on F32/F16/BF16 weights: Highway SIMD GEMV (decode) and tiled GEMM (prefill),
// compiled for every x86 target Highway knows and dispatched to the best one the CPU runs.
//
// Both are dot-product kernels over rows (weights stay row-major as stored, so nothing is repacked):
// a tile of R weight rows x T tokens keeps R*T vector accumulators, loads each weight vector once and
// each activation vector once per tile, and reduces lanes only at the end of a row. GEMV (one token)
// widens F16/BF16 inside the tile, straight from the mapped weights, so it streams them once. GEMM
// widens a block of kGemmRowBlock rows x kGemmColBlock columns into a per-thread float scratch once
// and reuses it for every token; F32 rows are used in place. See docs/kernels.md for the numbers.
#include "mixq/kernels/matmul.h"
#include "mixq/kernels/sparse_dot.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "mixq/kernels/matmul.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include "hwy/aligned_allocator.h"
#include "mixq/base/check.h"
#include "mixq/base/error.h"
#include "mixq/base/threads.h"
#include "mixq/formats/convert.h"
#include "mixq/formats/float16.h"
#include "mixq/kernels/quant_kernel.h"
#include "mixq/kernels/w8a8_dot.h"
#include "mixq/tensor/dtype.h"

HWY_BEFORE_NAMESPACE();
namespace mixq {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The GEMM block widened at once: 32 rows x 1024 floats = 128 KiB of scratch, which stays in L2 while
// every token streams past it; one tile's activations (6 tokens x 1024 floats = 24 KiB) stay in L1
// across the block's 8 row tiles, and each activation loaded from L3 serves 32 rows. Tiles are kTileRows x kTileTokens: on 16-register targets
// 12 accumulators + 3 activation vectors + 1 weight vector fill the registers exactly; AVX-512's 32
// registers take 4 x 6 (24 + 6 + 1), which halves the activation loads per FMA (about 20% faster).
// Below this many multiply-adds a product runs on one thread: waking and joining the others costs more
// than the work. On a quiet machine that is a wash, but on a busy one every barrier can wait for a
// descheduled thread (stories260K decoding measured 12x slower on two threads than on one there).
constexpr int64_t kMinParallelMacs = int64_t{1} << 17;

constexpr size_t kGemmRowBlock = 32;
constexpr size_t kGemmColBlock = 1024;
constexpr size_t kTileRows = 4;
#if HWY_TARGET <= HWY_AVX3  // AVX-512 and newer x86 targets: 32 vector registers of 16 floats
constexpr size_t kTileTokens = 6;
constexpr size_t kHalfGemvRows = 1;
constexpr size_t kFloatGemvRows = kTileRows;
#else
constexpr size_t kTileTokens = 3;
constexpr size_t kHalfGemvRows = 8;
constexpr size_t kFloatGemvRows = 8;
#endif

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

template <class D>
HWY_INLINE VF LoadWidened(D df, const float* HWY_RESTRICT p) {
  return hn::LoadU(df, p);
}
template <class D>
HWY_INLINE VF LoadWidened(D df, const hwy::float16_t* HWY_RESTRICT p) {
  const hn::Rebind<hwy::float16_t, D> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, p));
}
template <class D>
HWY_INLINE VF LoadWidened(D df, const hwy::bfloat16_t* HWY_RESTRICT p) {
  const hn::Rebind<hwy::bfloat16_t, D> db;
  return hn::PromoteTo(df, hn::LoadU(db, p));
}

HWY_INLINE float ScalarWidened(const float* p) { return *p; }
HWY_INLINE float ScalarWidened(const hwy::float16_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return F16ToF32(bits);
}
HWY_INLINE float ScalarWidened(const hwy::bfloat16_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return BF16ToF32(bits);
}

// acc[r][t] += w[r][c..c + lanes) * x[t][c..c + lanes), elementwise.
template <size_t R, size_t T, typename WT, typename XT>
HWY_INLINE void MulAddColumns(const WT* const* HWY_RESTRICT w, const XT* const* HWY_RESTRICT x, size_t c,
                              VF (&acc)[R][T]) {
  const DF df;
  VF xv[T];
  for (size_t t = 0; t < T; ++t) xv[t] = LoadWidened(df, x[t] + c);
  for (size_t r = 0; r < R; ++r) {
    const VF wv = LoadWidened(df, w[r] + c);
    for (size_t t = 0; t < T; ++t) acc[r][t] = hn::MulAdd(wv, xv[t], acc[r][t]);
  }
}

// sums[r * T + t] = sum_{c < n} w[r][c] * x[t][c]. The column tail (< one vector) is scalar. XT is float,
// or F16 for the decode of F16 weights (F16ActivationGemv). kChains accumulators per (row, token) take
// consecutive vectors in turn, so a tile of one row does not wait on one FMA chain's latency (Gemv).
template <size_t R, size_t T, typename WT, typename XT = float, size_t kChains = 1>
HWY_INLINE void DotTile(const WT* const* HWY_RESTRICT w, const XT* const* HWY_RESTRICT x, size_t n,
                        float* HWY_RESTRICT sums) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  VF acc[kChains][R][T];
  for (size_t k = 0; k < kChains; ++k) {
    for (size_t r = 0; r < R; ++r) {
      for (size_t t = 0; t < T; ++t) acc[k][r][t] = hn::Zero(df);
    }
  }
  size_t c = 0;
  for (; c + kChains * lanes <= n; c += kChains * lanes) {
    for (size_t k = 0; k < kChains; ++k) MulAddColumns<R, T>(w, x, c + k * lanes, acc[k]);
  }
  for (; c + lanes <= n; c += lanes) MulAddColumns<R, T>(w, x, c, acc[0]);
  for (size_t r = 0; r < R; ++r) {
    for (size_t t = 0; t < T; ++t) {
      VF total = acc[0][r][t];
      for (size_t k = 1; k < kChains; ++k) total = hn::Add(total, acc[k][r][t]);
      float sum = hn::GetLane(hn::SumOfLanes(df, total));
      for (size_t k = c; k < n; ++k) sum += ScalarWidened(w[r] + k) * ScalarWidened(x[t] + k);
      sums[r * T + t] = sum;
    }
  }
}

// DotTile for a run-time tile size up to R x T (the remainders at the matrix edges).
template <size_t R, size_t T, size_t kChains = 1, typename WT, typename XT>
void DotTileAnySize(size_t n_rows, size_t n_tok, const WT* const* w, const XT* const* x, size_t n,
                    float* sums) {
  if constexpr (T > 1) {
    if (n_tok < T) return DotTileAnySize<R, T - 1, kChains>(n_rows, n_tok, w, x, n, sums);
  }
  if constexpr (R > 1) {
    if (n_rows < R) return DotTileAnySize<R - 1, T, kChains>(n_rows, n_tok, w, x, n, sums);
  }
  DotTile<R, T, WT, XT, kChains>(w, x, n, sums);
}

template <typename WT>
void WidenRow(const WT* HWY_RESTRICT src, float* HWY_RESTRICT dst, size_t n) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  size_t c = 0;
  for (; c + lanes <= n; c += lanes) hn::StoreU(LoadWidened(df, src + c), df, dst + c);
  for (; c < n; ++c) dst[c] = ScalarWidened(src + c);
}

// One token: rows split over the threads by ParallelForStreaming, each thread streaming its rows in
// tiles of kGemvRows<WT> rows sharing each activation load; y[r] = sum * out_scale. The tile height is
// measured per CPU kind (docs/kernels.md, F16 decode): on AVX-512 (16-lane vectors) F16/BF16 go one row
// at a time, faster there whenever the memory gave more than its usual ~33 GB/s (F16 on the
// LLaMA-2-7B-shaped model, builds alternated: 17.3-22.3 t/s against 16.2-18.6 with 4-row tiles), and F32
// takes 4 rows (one row measured 3% slower). On AVX2 (8 lanes) a single row's FMA chain moves only 16
// bytes of F16 per FMA latency, about 12 GB/s per core: 4-row tiles ran 15.0-17.9 t/s against 9.6-12.6
// one row at a time, and 8-row tiles (8 chains, 10 of the 16 registers) beat 4 by 7.0% and 5.9% on F16,
// 2.7% on BF16 and 6.9% on F32 (in-process alternation, session 11). A row's sum is the same in any tile
// (the same kGemvChains<WT> accumulators per row, the same order), so the outputs do not depend on where a
// thread's rows start.
template <typename WT>
constexpr size_t kGemvRows = std::is_same_v<WT, float> ? kFloatGemvRows : kHalfGemvRows;
// Independent FMA chains per row, kGemvRows<WT> * kGemvChains<WT> >= 4: AVX-512's one-row F16/BF16 tile
// had one chain, 16 weights (32 bytes) per FMA latency, about 30 GB/s per core at this Zen 4's clock;
// its fast memory mode asks each of two threads for ~31 (docs/kernels.md, session 19).
template <typename WT>
constexpr size_t kGemvChains = kGemvRows<WT> >= 4 ? 1 : 4 / kGemvRows<WT>;

template <typename WT, typename XT>
void Gemv(const std::byte* w, size_t row_bytes, int64_t rows, size_t cols, const XT* x, float out_scale,
          float* y) {
  constexpr size_t kRows = kGemvRows<WT>;
  const int64_t n_steps = (rows + kRows - 1) / kRows;
  const bool parallel = rows * static_cast<int64_t>(cols) >= kMinParallelMacs;
  ParallelForStreaming(n_steps, 1, parallel, [&](int64_t step0, int64_t step1) {
    for (int64_t step = step0; step < step1; ++step) {
      const int64_t r0 = step * static_cast<int64_t>(kRows);
      const size_t n_rows = static_cast<size_t>(std::min<int64_t>(kRows, rows - r0));
      const WT* w_rows[kRows] = {};
      for (size_t i = 0; i < n_rows; ++i) {
        w_rows[i] = reinterpret_cast<const WT*>(w + static_cast<size_t>(r0 + i) * row_bytes);
      }
      float sums[kRows];
      if (n_rows == kRows) {
        DotTile<kRows, 1, WT, XT, kGemvChains<WT>>(w_rows, &x, cols, sums);
      } else {
        DotTileAnySize<kRows, 1, kGemvChains<WT>>(n_rows, 1, w_rows, &x, cols, sums);
      }
      for (size_t i = 0; i < n_rows; ++i) y[r0 + i] = sums[i] * out_scale;
    }
  });
}

// The power of two that brings the largest |x| (finite) into [2^14, 2^15): far from F16's overflow at
// 65520 and, with F16's normal range reaching down to 2^-14, keeping every activation above max|x| * 2^-29
// a normal F16 number. 0 when that power (or its inverse) is not a normal float: max|x| below 2^-111.
float F16ActivationScale(float max_abs) {
  if (max_abs == 0.0f) return 1.0f;
  int exponent = 0;
  std::frexp(max_abs, &exponent);  // 2^(exponent-1) <= max_abs < 2^exponent, exponent in [-148, 128]
  const int power = 15 - exponent;
  return power <= 126 ? std::ldexp(1.0f, power) : 0.0f;
}

// One token on F16 or BF16 weights, as ggml's ggml_vec_dot_f16 runs F16: the activation row is rounded to
// F16 once per call (scaled by a power of two first, so no activation spike can overflow F16), and each
// step loads and widens two halves. That halves the activation bytes every row tile re-reads from L1/L2
// (11008 columns of floats do not fit L1): F16 decode on the LLaMA-2-7B-shaped model measured ~7% faster
// on AVX-512 and ~18% on AVX2 (docs/kernels.md); one-thread BF16 decode 76 -> 87% of the bound (README,
// session 20). Each activation moves by at most 2^-11 of itself (the F16 weights were rounded by as much,
// BF16 ones by up to 2^-8; ggml rounds BF16's activations to BF16, 2^-8), while the int8 blocks every
// quantized kernel multiplies with move each value by up to 1/254 of its block's max. Returns false, leaving y alone, when x holds a NaN or infinity (the
// float path then propagates it) or is too small to scale (below 2^-111: the float path is exact there).
template <typename WT>
bool F16ActivationGemv(const std::byte* w, size_t row_bytes, int64_t rows, size_t cols, const float* x,
                       float* y) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  // Max may drop a NaN (x86 returns its second operand), so NaN and infinity are also caught by x * 0.
  const VF zero = hn::Zero(df);
  VF max_v = zero, nonfinite_v = zero;
  size_t c = 0;
  for (; c + lanes <= cols; c += lanes) {
    const VF xv = hn::LoadU(df, x + c);
    max_v = hn::Max(max_v, hn::Abs(xv));
    nonfinite_v = hn::MulAdd(xv, zero, nonfinite_v);
  }
  float max_abs = hn::GetLane(hn::MaxOfLanes(df, max_v));
  float nonfinite = hn::GetLane(hn::SumOfLanes(df, nonfinite_v));
  for (; c < cols; ++c) {
    max_abs = std::max(max_abs, std::abs(x[c]));
    nonfinite += x[c] * 0.0f;
  }
  if (!std::isfinite(max_abs) || nonfinite != 0.0f) return false;

  const float scale = F16ActivationScale(max_abs);
  if (scale == 0.0f) return false;
  const float inverse = 1.0f / scale;
  auto* x_half = reinterpret_cast<hwy::float16_t*>(ActivationScratch(cols * sizeof(hwy::float16_t)));
  const hn::Rebind<hwy::float16_t, DF> dh;
  const VF scale_v = hn::Set(df, scale);
  for (c = 0; c + lanes <= cols; c += lanes) {
    hn::StoreU(hn::DemoteTo(dh, hn::Mul(hn::LoadU(df, x + c), scale_v)), dh, x_half + c);
  }
  for (; c < cols; ++c) {
    const uint16_t bits = F32ToF16(x[c] * scale);
    std::memcpy(x_half + c, &bits, sizeof bits);
  }

  Gemv<WT>(w, row_bytes, rows, cols, x_half, inverse, y);
  return true;
}

// Many tokens: blocks of kGemmRowBlock rows are split over the threads; each block is widened one
// column block at a time and reused for all tokens, accumulating partial sums into y.
template <typename WT>
void Gemm(const std::byte* w, size_t row_bytes, int64_t rows, size_t cols, const float* x,
          int64_t n_tokens, float* y) {
  constexpr bool kIsF32 = std::is_same_v<WT, float>;
  const int64_t n_blocks = (rows + kGemmRowBlock - 1) / kGemmRowBlock;
  const size_t col_block = std::min(cols, kGemmColBlock);
  const bool parallel = rows * static_cast<int64_t>(cols) * n_tokens >= kMinParallelMacs;
#pragma omp parallel if (parallel)
  {
    hwy::AlignedFreeUniquePtr<float[]> scratch;
    if (!kIsF32) scratch = hwy::AllocateAligned<float>(kGemmRowBlock * col_block);
#pragma omp for schedule(static)
    for (int64_t block = 0; block < n_blocks; ++block) {
      const int64_t r0 = block * static_cast<int64_t>(kGemmRowBlock);
      const size_t n_rows = static_cast<size_t>(std::min<int64_t>(kGemmRowBlock, rows - r0));
      for (size_t c0 = 0; c0 < cols; c0 += col_block) {
        const size_t n_cols = std::min(col_block, cols - c0);
        const float* w_rows[kGemmRowBlock];
        for (size_t i = 0; i < n_rows; ++i) {
          const WT* src = reinterpret_cast<const WT*>(w + static_cast<size_t>(r0 + i) * row_bytes) + c0;
          if constexpr (kIsF32) {
            w_rows[i] = src;
          } else {
            WidenRow(src, scratch.get() + i * col_block, n_cols);
            w_rows[i] = scratch.get() + i * col_block;
          }
        }
        for (int64_t t0 = 0; t0 < n_tokens; t0 += kTileTokens) {
          const size_t n_tok = static_cast<size_t>(std::min<int64_t>(kTileTokens, n_tokens - t0));
          const float* x_tok[kTileTokens];
          for (size_t t = 0; t < n_tok; ++t) x_tok[t] = x + static_cast<size_t>(t0 + t) * cols + c0;
          for (size_t i = 0; i < n_rows; i += kTileRows) {
            const size_t n_tile_rows = std::min(kTileRows, n_rows - i);
            float sums[kTileRows * kTileTokens];
            if (n_tile_rows == kTileRows && n_tok == kTileTokens) {
              DotTile<kTileRows, kTileTokens>(w_rows + i, x_tok, n_cols, sums);
            } else {
              DotTileAnySize<kTileRows, kTileTokens>(n_tile_rows, n_tok, w_rows + i, x_tok, n_cols, sums);
            }
            for (size_t r = 0; r < n_tile_rows; ++r) {
              for (size_t t = 0; t < n_tok; ++t) {
                float& out = y[static_cast<size_t>(t0 + t) * static_cast<size_t>(rows) + r0 + i + r];
                out = (c0 == 0 ? 0.0f : out) + sums[r * n_tok + t];
              }
            }
          }
        }
      }
    }
  }
}

template <typename WT>
void MatMulTyped(const std::byte* w, size_t row_bytes, int64_t rows, int64_t cols, const float* x,
                 int64_t n_tokens, float* y) {
  if (n_tokens == 1) {
    if constexpr (!std::is_same_v<WT, float>) {
      if (F16ActivationGemv<WT>(w, row_bytes, rows, static_cast<size_t>(cols), x, y)) return;
    }
    Gemv<WT>(w, row_bytes, rows, static_cast<size_t>(cols), x, 1.0f, y);
  } else {
    Gemm<WT>(w, row_bytes, rows, static_cast<size_t>(cols), x, n_tokens, y);
  }
}

// dtype_id: 0 = F32, 1 = F16, 2 = BF16 (kept a plain int so the dispatch table has one signature).
void MatMulImpl(int dtype_id, const std::byte* w, size_t row_bytes, int64_t rows, int64_t cols,
                const float* x, int64_t n_tokens, float* y) {
  switch (dtype_id) {
    case 0:
      return MatMulTyped<float>(w, row_bytes, rows, cols, x, n_tokens, y);
    case 1:
      return MatMulTyped<hwy::float16_t>(w, row_bytes, rows, cols, x, n_tokens, y);
    default:
      return MatMulTyped<hwy::bfloat16_t>(w, row_bytes, rows, cols, x, n_tokens, y);
  }
}

const char* TargetNameImpl() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace mixq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mixq {

HWY_EXPORT(MatMulImpl);
HWY_EXPORT(TargetNameImpl);

bool HasMatMulKernel(DType dtype) { return HasFloatCodec(dtype) || FindQuantKernel(dtype) != nullptr; }

const char* MatMulTargetName() { return HWY_DYNAMIC_DISPATCH(TargetNameImpl)(); }

void MatMul(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  // W8A8 (docs/w8a8.md): int8 activations with one scale per token row; the loader guarantees kInt8Sym rows.
  if (w.activation != ActivationQuant::kFormat) {
    MatMulW8A8(w, x, n_tokens, y);
    return;
  }
  if (const QuantKernel* kernel = FindQuantKernel(w.dtype)) {
    MatMulQuantized(*kernel, w, x, n_tokens, y);
    return;
  }
  if (!HasFloatCodec(w.dtype)) Fail("MatMul: tensor '{}' has dtype {}, which has no kernel", w.name, DTypeName(w.dtype));
  const int64_t rows = w.rows();
  const int64_t cols = w.cols();
  if (rows == 0 || n_tokens <= 0) return;
  const size_t element_bytes = w.dtype == DType::kF32 ? 4 : 2;
  MIXQ_CHECK_EQ(w.bytes, static_cast<size_t>(rows * cols) * element_bytes);
  const int dtype_id = w.dtype == DType::kF32 ? 0 : w.dtype == DType::kF16 ? 1 : 2;
  HWY_DYNAMIC_DISPATCH(MatMulImpl)(dtype_id, w.data, w.row_bytes(), rows, cols, x, n_tokens, y);
  // Float weights rarely carry a salient part (it exists to rescue quantized ones): a plain second pass.
  AddSparseProducts(w.salient, 0, rows, x, cols, n_tokens, y, rows);
}

}  // namespace mixq
#endif  // HWY_ONCE
