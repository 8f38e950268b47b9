// RTN quantization into mixq INT rows: a grid of candidate scales per group and their least-squares refits,
// ranked by (importance-weighted) squared error with the scale rounded to FP16; the best few, and plain
// min-max RTN, are measured exactly as stored.
//
// Speed: every candidate costs one pass over its group, so the passes are written once over 16-lane float
// vectors (GCC vector extensions) and compiled twice, for the baseline ISA and for AVX; the file is built
// with -ffp-contract=off, so both paths do the same IEEE operations in the same order and give identical
// bytes. A pass accumulates in float within blocks of 256 values and in double across blocks (the
// precision argument is at CandidateSums).
#include "mixq/formats/int_quant.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "mixq/base/check.h"
#include "mixq/base/error.h"
#include "mixq/formats/float16.h"
#include "mixq/tensor/int_layout.h"

namespace mixq {
namespace {

constexpr float kMaxF16 = 65504.0f;

// The FP16 value a scale is stored as; scales beyond FP16's range are held at its largest finite value.
// In FP16's normal range this is float's mantissa rounded half to even to 10 bits, done on the bits (the
// search rounds ~100 scales per group); subnormal, zero and non-finite scales take the codec.
float RoundToF16(float s) {
  const float clamped = std::clamp(s, -kMaxF16, kMaxF16);
  const uint32_t bits = FloatBits(clamped);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x38800000u && abs <= 0x477fe000u) {  // [2^-14, 65504]
    return BitsFloat((bits + 0xfffu + ((bits >> 13) & 1u)) & ~0x1fffu);
  }
  return F16ToF32(F32ToF16(clamped));
}

// Round half to even without a libm call (the baseline x86-64 target has no SSE4.1 round): exact for
// |t| < 2^22, which the caller guarantees by clamping. IEEE semantics (no -ffast-math) keep the compiler
// from folding (t + c) - c into t.
constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23
inline float RoundNearestEven(float t) { return (t + kRoundMagic) - kRoundMagic; }
// The same for doubles (|t| < 2^51), as std::nearbyint in the default rounding mode, without a libm call.
inline double RoundNearestEven(double t) {
  constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  return (t + kMagic) - kMagic;
}

// Integer code for x/scale + zero, clamped to [0, qmax]; `inv` is 1/scale (0 when the scale is 0).
inline int CodeOf(float x, float inv, int zero, int qmax) {
  const float limit = static_cast<float>(qmax + 1);
  const float t = std::clamp(x * inv, -limit, limit);
  const int q = static_cast<int>(RoundNearestEven(t)) + zero;
  return std::clamp(q, 0, qmax);
}

// The values sharing one scale: `rows` runs of n values, run r at x + r * stride; value i of every run
// weighs importance[i] (1 when null). A group is one run; a per-tensor scale spans all rows.
struct Span {
  const float* x;
  int64_t n;
  int64_t rows;
  int64_t stride;
  const float* importance;
};

// ---- The passes ---------------------------------------------------------------------------------------

#define MIXQ_INLINE inline __attribute__((always_inline))
// Lambdas too: each ISA's copy of the passes must be compiled whole for that ISA.
#define MIXQ_LAMBDA_INLINE __attribute__((always_inline))

// One candidate (1/scale, scale, zero): its codes q and, with l = q - zero and e = x - scale * l, the
// weighted sums of l, l^2, e, e^2, e*l. These give in closed form the error of the codes under any scale
// and zero-point without the cancellation of expanding sum w (x - s l)^2 (the e-terms are error-sized).
// Precision: float within a block of 256 values (16 per lane), double across blocks. Unweighted, the l and
// l^2 sums are integers below 16 * 255^2 < 2^24 per lane, so exact; the e-sums have the relative error of
// a 16-term float sum (< 16 * 2^-24 = 1e-6 of the sum of magnitudes), which only ranks candidates: the
// finalists are measured again in double (ErrorBody).
struct CandidateSums {
  double l = 0, ll = 0, e = 0, ee = 0, el = 0;
};

struct PassArgs {
  float inv;     // 1 / scale; the caller ensures |x * inv| < 2^21 for every x
  float scale;
  float zlo;     // -zero: the smallest l
  float zhi;     // qmax - zero: the largest l
  float limit;   // ErrorBody: |x * inv| is clamped to this first (qmax + 1), as CodeOf does
  float scale_hi;  // CandidateBody: scale with its low 9 mantissa bits cleared (scale - scale_hi is exact)
};

// What the search needs to know of a span before its candidates: the weighted sums (double lanes) and the
// range.
struct SpanStats {
  double w = 0, wx = 0, wxx = 0;
  float lo = 0, hi = 0;
};

// The passes compiled for one ISA: [weighted] (and [affine] for candidates).
struct PassKernels {
  CandidateSums (*candidate[2][2])(const Span&, const PassArgs&);
  double (*error[2])(const Span&, const PassArgs&);
  SpanStats (*stats[2])(const Span&);
};


namespace baseline {
#include "mixq/formats/int_quant_passes.inc"
}  // namespace baseline

#if defined(__x86_64__)
// The same passes compiled for AVX (chosen at run time); clang spells the per-function target differently.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx")
#endif
#define MIXQ_INT_QUANT_AVX 1
namespace avx {
#include "mixq/formats/int_quant_passes.inc"
}  // namespace avx
#undef MIXQ_INT_QUANT_AVX
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

bool CpuHasAvx() {
#if defined(__x86_64__)
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") != 0;  // also checks that the OS saves the YMM state
  }();
  return has;
#else
  return false;
#endif
}

std::atomic<const PassKernels*> g_kernels{nullptr};

const PassKernels* AutoKernels() {
#if defined(__x86_64__)
  if (CpuHasAvx()) return &avx::kKernels;
#endif
  return &baseline::kKernels;
}

const PassKernels& Kernels() {
  const PassKernels* k = g_kernels.load(std::memory_order_relaxed);
  if (k == nullptr) {
    k = AutoKernels();
    g_kernels.store(k, std::memory_order_relaxed);
  }
  return *k;
}

// ---- The search -------------------------------------------------------------------------------------------

// Each candidate costs one pass (its codes and their sums); the few best by the closed-form error of those
// codes, and plain min-max RTN, are then judged exactly, with the codes re-rounded against the FP16 scale,
// as they will be stored.
struct Search {
  static constexpr int kFinalists = 4;

  Search(Span span_, int bits_)
      : span(span_),
        bits(bits_),
        qmax((1 << bits_) - 1),
        weighted(span_.importance != nullptr),
        k(Kernels()),
        stats(k.stats[weighted](span_)),
        amax(std::max(-stats.lo, stats.hi)) {}

  Span span;
  int bits;
  int qmax;
  bool weighted;
  const PassKernels& k;
  SpanStats stats;
  float amax;
  struct Candidate {
    double estimate = 0.0;
    IntGroupParams params;
  };
  Candidate finalists[kFinalists];
  int n_finalists = 0;

  // The sums of one candidate's codes (scale finite and nonzero, zero in [0, qmax]); false when 1/scale
  // is so large that x / scale leaves the rounding trick's range (a subnormal scale: FP16 stores it as 0,
  // which the search always judges anyway).
  bool Pass(float scale, int zero, bool affine, CandidateSums* sums) const {
    const float inv = 1.0f / scale;
    if (!(amax * std::fabs(inv) < 2097152.0f)) return false;
    const PassArgs a{inv, scale, static_cast<float>(-zero), static_cast<float>(qmax - zero), 0.0f,
                     BitsFloat(FloatBits(scale) & ~0x1ffu)};
    *sums = k.candidate[weighted][affine](span, a);
    if (affine && !weighted) sums->e = stats.wx - static_cast<double>(scale) * sums->l;  // l-sum exact here
    return true;
  }

  // Weighted squared error of storing the span with (scale, zero); the scale must be FP16-exact.
  double Error(float scale, int zero) const {
    const PassArgs a{scale == 0.0f ? 0.0f : 1.0f / scale, scale, static_cast<float>(-zero),
                     static_cast<float>(qmax - zero), static_cast<float>(qmax + 1), 0.0f};
    return k.error[weighted](span, a);
  }

  // The closed-form error of the candidate's codes (taken with `pass_scale` and `pass_zero`) stored with
  // (s, zero): with l' = l + dz, dz = pass_zero - zero, x - s l' = e + c l + g, c = pass_scale - s,
  // g = -s dz.
  double Estimate(const CandidateSums& sums, float pass_scale, int pass_zero, float s, int zero) const {
    const double c = static_cast<double>(pass_scale) - s;
    const double g = -static_cast<double>(s) * (pass_zero - zero);
    return sums.ee + c * c * sums.ll + g * g * stats.w + 2.0 * c * sums.el + 2.0 * g * sums.e + 2.0 * c * g * sums.l;
  }

  // The error of the summed codes under (scale, zero), the scale first rounded to FP16; kept if among the
  // best few.
  void Offer(float scale, int zero, const CandidateSums& sums, float pass_scale, int pass_zero) {
    if (!std::isfinite(scale)) return;
    const float s16 = RoundToF16(scale);
    const double estimate = Estimate(sums, pass_scale, pass_zero, s16, zero);
    for (int i = 0; i < n_finalists; ++i) {
      if (finalists[i].params.scale == s16 && finalists[i].params.zero == zero) return;  // already judged
    }
    if (n_finalists == kFinalists && estimate >= finalists[kFinalists - 1].estimate) return;
    int slot = n_finalists < kFinalists ? n_finalists++ : kFinalists - 1;
    while (slot > 0 && finalists[slot - 1].estimate > estimate) {
      finalists[slot] = finalists[slot - 1];
      --slot;
    }
    finalists[slot] = {estimate, {s16, zero}};
  }

  // The least-squares scale for the codes with a zero-point `zero`: s = sum w x l' / sum w l'^2, l' = q - zero,
  // from sum w x l = sum w e l + scale * sum w l^2 and l' = l + dz.
  void OfferRefit(int zero, const CandidateSums& sums, float pass_scale, int pass_zero) {
    const double dz = pass_zero - zero;
    const double sll = sums.ll + 2.0 * dz * sums.l + dz * dz * stats.w;
    if (!(sll > 0.0)) return;
    const double sxl = sums.el + pass_scale * sums.ll + dz * stats.wx;
    Offer(static_cast<float>(sxl / sll), zero, sums, pass_scale, pass_zero);
  }

  // The least-squares fit x ~ a * l + b, the zero-point where it crosses 0 rounded to the nearest
  // representable one, and the scale refitted for that zero.
  void OfferAffine(const CandidateSums& sums, float pass_scale, int pass_zero) {
    const double det = stats.w * sums.ll - sums.l * sums.l;
    if (!(det > 0.0)) return;
    const double sxl = sums.el + pass_scale * sums.ll;
    const double a = (stats.w * sxl - sums.l * stats.wx) / det;
    if (!(a > 0.0)) return;
    const double b = (stats.wx - a * sums.l) / stats.w;
    // Clamped before rounding (the same result, the bounds being integers) so that the rounding is exact.
    const double zero = RoundNearestEven(std::clamp(pass_zero - b / a, 0.0, static_cast<double>(qmax)));
    OfferRefit(static_cast<int>(zero), sums, pass_scale, pass_zero);
  }

  // Judges the finalists and then `plain` (plain min-max RTN, so the result is never worse than it)
  // exactly; the first with the least error wins, scale 0 when nothing beats reading every weight as 0.
  IntGroupParams Finish(int empty_zero, IntGroupParams plain) const {
    IntGroupParams best{0.0f, empty_zero};
    double best_error = stats.wxx;  // scale 0: every weight read as 0
    bool plain_judged = plain.scale == 0.0f;
    for (int i = 0; i < n_finalists; ++i) {
      const IntGroupParams& p = finalists[i].params;
      plain_judged |= p.scale == plain.scale && p.zero == plain.zero;
      const double err = Error(p.scale, p.zero);
      if (err < best_error) {
        best_error = err;
        best = p;
      }
    }
    if (!plain_judged && Error(plain.scale, plain.zero) < best_error) best = plain;
    return best;
  }

  // Symmetric: the codes -nmax..nmax-1 around zero = nmax. As ggml's make_qx_quants, the largest-magnitude
  // value m is mapped onto -nmax (or nmax-1) with denominators near those, plus clipping ratios down to
  // 0.5; every candidate's codes get their least-squares scale.
  IntGroupParams RunSymmetric() {
    const int nmax = 1 << (bits - 1);
    const float m = LargestMagnitude();
    if (m == 0.0f) return {0.0f, nmax};
    for (const int sign : {-1, 1}) {
      const float base = sign < 0 ? static_cast<float>(nmax) : static_cast<float>(nmax - 1);
      auto try_denominator = [&](float d) {
        const float scale = sign * m / d;  // code - zero = x / scale: m lands on sign * d
        CandidateSums sums;
        if (!Pass(scale, nmax, false, &sums)) return;
        Offer(scale, nmax, sums, scale, nmax);
        OfferRefit(nmax, sums, scale, nmax);
      };
      for (int is = -9; is <= 9; ++is) {
        const float d = base + 0.1f * static_cast<float>(is);
        if (d > 0.25f) try_denominator(d);
      }
      for (int k = 1; k <= 10; ++k) try_denominator(base / (1.0f - 0.05f * static_cast<float>(k)));
    }
    // Plain max scaling: amax onto nmax - 1.
    return Finish(nmax, {RoundToF16(amax / static_cast<float>(nmax - 1)), nmax});
  }

  // The value of largest magnitude, the first one when +v and -v tie (the order the grid has always used).
  float LargestMagnitude() const {
    if (-stats.lo != stats.hi) return -stats.lo > stats.hi ? stats.lo : stats.hi;
    for (int64_t r = 0; r < span.rows; ++r) {
      const float* x = span.x + r * span.stride;
      for (int64_t i = 0; i < span.n; ++i) {
        if (std::fabs(x[i]) == stats.hi) return x[i];
      }
    }
    return stats.hi;
  }

  // Asymmetric: the range [min(x,0), max(x,0)] shrunk by ratios down to 0.525 (AWQ's clipping grid) and
  // divided into qmax +- 0.9 steps (ggml's make_qkx2_quants); each candidate as is, with its scale
  // refitted, and refitted by least squares to an integer zero-point.
  IntGroupParams RunAsymmetric() {
    const float lo = stats.lo, hi = stats.hi;
    if (hi == lo) return {0.0f, 0};
    auto zero_for = [&](float range_lo, float scale) {
      return static_cast<int>(RoundNearestEven(std::clamp(-range_lo / scale, 0.0f, static_cast<float>(qmax))));
    };
    auto try_range = [&](float range_lo, float range_hi, float steps) {
      const float scale = (range_hi - range_lo) / steps;
      if (!(scale > 0.0f) || !std::isfinite(scale)) return;
      const int zero = zero_for(range_lo, scale);
      CandidateSums sums;
      if (!Pass(scale, zero, true, &sums)) return;
      Offer(scale, zero, sums, scale, zero);
      OfferRefit(zero, sums, scale, zero);
      OfferAffine(sums, scale, zero);
    };
    const float q = static_cast<float>(qmax);
    for (int k = 0; k < 20; ++k) {
      const float r = 1.0f - 0.025f * static_cast<float>(k);
      try_range(r * lo, r * hi, q);
    }
    for (int is = -9; is <= 9; ++is) {
      if (is != 0 && q + 0.1f * static_cast<float>(is) > 0.25f) try_range(lo, hi, q + 0.1f * static_cast<float>(is));
    }
    // Plain min-max: the FP16 scale (hi - lo) / qmax, its zero-point rounded against that scale.
    const float plain = RoundToF16((hi - lo) / q);
    return Finish(0, {plain, plain > 0.0f ? zero_for(lo, plain) : 0});
  }
};

IntGroupParams SearchSpan(Span span, int bits, bool symmetric);

// A span of one run with some values excluded (the salient weights): searched on a copy where they read 0
// with weight 0, which adds exactly nothing to any candidate's sums and keeps the range [min(x,0), max(x,0)]
// that of the kept values. The kept values keep their importance (1 without one); when that sums to 0 (dead
// channels), they weigh 1 each and the excluded still 0, so the search stays over the kept values.
// No value excluded: the plain search, so such a group is stored exactly as without a mask.
IntGroupParams SearchExcluding(const float* x, int64_t n, const float* importance, const uint8_t* exclude, int bits,
                               bool symmetric) {
  bool any = false;
  for (int64_t i = 0; i < n && !any; ++i) any = exclude[i] != 0;
  if (!any) return SearchSpan(Span{x, n, 1, n, importance}, bits, symmetric);
  std::vector<float> xs(static_cast<size_t>(n)), ws(static_cast<size_t>(n));
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = exclude[i] == 0;
    xs[static_cast<size_t>(i)] = keep ? x[i] : 0.0f;
    ws[static_cast<size_t>(i)] = keep ? (importance != nullptr ? importance[i] : 1.0f) : 0.0f;
    total += ws[static_cast<size_t>(i)];
  }
  if (total == 0.0) {
    for (int64_t i = 0; i < n; ++i) ws[static_cast<size_t>(i)] = exclude[i] == 0 ? 1.0f : 0.0f;
  }
  return SearchSpan(Span{xs.data(), n, 1, n, ws.data()}, bits, symmetric);
}

IntGroupParams SearchSpan(Span span, int bits, bool symmetric) {
  if (span.importance != nullptr) {
    double total = 0.0;
    for (int64_t i = 0; i < span.n; ++i) total += span.importance[i];
    if (total == 0.0) span.importance = nullptr;  // nothing to weigh by: plain squared error
  }
  Search search(span, bits);
  return symmetric ? search.RunSymmetric() : search.RunAsymmetric();
}

// `exclude` (null, or the row's [n] mask): an excluded weight is stored as its group's zero-point code.
void WriteRow(const IntRowLayout& layout, const float* x, const IntGroupParams* params, int64_t params_stride,
              uint8_t* row, const uint8_t* exclude = nullptr) {
  std::memset(row, 0, layout.row_bytes);
  const int qmax = (1 << layout.bits) - 1;
  for (int64_t k = 0; k < layout.n_groups; ++k) {
    const IntGroupParams& p = params[k * params_stride];
    const uint16_t scale_bits = F32ToF16(p.scale);
    std::memcpy(row + 2 * k, &scale_bits, sizeof(scale_bits));
    if (!layout.symmetric) WritePackedCode(row + layout.zeros_offset, k, layout.bits, static_cast<uint32_t>(p.zero));
    uint8_t* codes = row + layout.GroupCodesOffset(k);
    const float* gx = x + layout.GroupStart(k);
    const float inv = p.scale == 0.0f ? 0.0f : 1.0f / p.scale;
    const uint8_t* gex = exclude == nullptr ? nullptr : exclude + layout.GroupStart(k);
    for (int64_t i = 0; i < layout.GroupLength(k); ++i) {
      const int code = gex != nullptr && gex[i] != 0 ? p.zero : CodeOf(gx[i], inv, p.zero, qmax);
      WritePackedCode(codes, i, layout.bits, static_cast<uint32_t>(code));
    }
  }
}

}  // namespace

int IntCode(float x, const IntGroupParams& params, int bits) {
  return CodeOf(x, params.scale == 0.0f ? 0.0f : 1.0f / params.scale, params.zero, (1 << bits) - 1);
}

bool SetIntQuantIsa(IntQuantIsa isa) {
  switch (isa) {
    case IntQuantIsa::kAuto:
      g_kernels.store(AutoKernels());
      return true;
    case IntQuantIsa::kBaseline:
      g_kernels.store(&baseline::kKernels);
      return true;
    case IntQuantIsa::kAvx:
#if defined(__x86_64__)
      if (CpuHasAvx()) {
        g_kernels.store(&avx::kKernels);
        return true;
      }
#endif
      return false;
  }
  return false;
}

const char* IntQuantIsaName() { return &Kernels() == &baseline::kKernels ? "baseline" : "avx"; }

IntGroupParams SearchIntGroupParams(const float* x, int64_t n, const float* importance, int bits, bool symmetric,
                                    const uint8_t* exclude) {
  MIXQ_CHECK(bits >= 2 && bits <= 8);
  if (exclude != nullptr) return SearchExcluding(x, n, importance, exclude, bits, symmetric);
  return SearchSpan(Span{x, n, 1, n, importance}, bits, symmetric);
}

void QuantizeIntMatrix(DType dtype, const float* src, int64_t rows, int64_t cols, int64_t group, bool per_tensor,
                       std::byte* dst, const float* importance, const uint8_t* exclude) {
  if (!IsIntFormat(dtype)) Fail("QuantizeIntMatrix: type {} is not a mixq INT type", DTypeName(dtype));
  if (rows < 0 || cols < 0 || group < 0) {
    Fail("QuantizeIntMatrix: shape [{}, {}] with group {}: expected sizes >= 0", rows, cols, group);
  }
  if (per_tensor && group != 0) {
    Fail("QuantizeIntMatrix: a per-tensor {} scale is stored per row, so group must be 0, got {}", DTypeName(dtype),
         group);
  }
  if (rows == 0 || cols == 0) return;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float v = src[r * cols + c];
      if (!std::isfinite(v)) Fail("QuantizeIntMatrix: weight [{}, {}] is {}; only finite weights can be quantized", r, c, v);
    }
  }
  if (importance != nullptr) {
    for (int64_t c = 0; c < cols; ++c) {
      if (!std::isfinite(importance[c]) || importance[c] < 0.0f) {
        Fail("QuantizeIntMatrix: importance of input channel {} is {}; expected a finite value >= 0", c, importance[c]);
      }
    }
  }
  const DTypeTraits& traits = Traits(dtype);
  const IntRowLayout layout(dtype, cols, group);
  auto* out = reinterpret_cast<uint8_t*>(dst);

  auto row_exclude = [&](int64_t r) { return exclude == nullptr ? nullptr : exclude + r * cols; };
  if (per_tensor) {
    IntGroupParams p;
    if (exclude == nullptr) {
      p = SearchSpan(Span{src, cols, rows, cols, importance}, traits.bits, traits.symmetric);
    } else {
      // One run over the whole tensor, with the per-channel importance repeated for every row.
      std::vector<float> all_importance;
      if (importance != nullptr) {
        all_importance.resize(static_cast<size_t>(rows * cols));
        for (int64_t r = 0; r < rows; ++r) std::memcpy(&all_importance[r * cols], importance, cols * sizeof(float));
      }
      p = SearchExcluding(src, rows * cols, importance == nullptr ? nullptr : all_importance.data(), exclude,
                          traits.bits, traits.symmetric);
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      WriteRow(layout, src + r * cols, &p, 0, out + static_cast<size_t>(r) * layout.row_bytes, row_exclude(r));
    }
    return;
  }
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<IntGroupParams> params(static_cast<size_t>(layout.n_groups));
    const float* x = src + r * cols;
    for (int64_t k = 0; k < layout.n_groups; ++k) {
      const int64_t start = layout.GroupStart(k);
      const float* group_importance = importance == nullptr ? nullptr : importance + start;
      params[static_cast<size_t>(k)] =
          exclude == nullptr
              ? SearchSpan(Span{x + start, layout.GroupLength(k), 1, 0, group_importance}, traits.bits,
                           traits.symmetric)
              : SearchExcluding(x + start, layout.GroupLength(k), group_importance, row_exclude(r) + start,
                                traits.bits, traits.symmetric);
    }
    WriteRow(layout, x, params.data(), 1, out + static_cast<size_t>(r) * layout.row_bytes, row_exclude(r));
  }
}

}  // namespace mixq
