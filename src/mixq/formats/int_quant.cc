// RTN quantization into mixq INT rows: a grid of candidate scales per group and their least-squares refits,
// ranked by (importance-weighted) squared error with the scale rounded to FP16; the best few are measured
// exactly as stored.
#include "mixq/formats/int_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "mixq/base/check.h"
#include "mixq/base/error.h"
#include "mixq/formats/float16.h"
#include "mixq/tensor/int_layout.h"

namespace mixq {
namespace {

constexpr float kMaxF16 = 65504.0f;

// The FP16 value a scale is stored as; scales beyond FP16's range are held at its largest finite value.
float RoundToF16(float s) {
  const float clamped = std::clamp(s, -kMaxF16, kMaxF16);
  return F16ToF32(F32ToF16(clamped));
}

// Round half to even without a libm call (the baseline x86-64 target has no SSE4.1 round): exact for
// |t| < 2^22, which the caller guarantees by clamping. IEEE semantics (no -ffast-math) keep the compiler
// from folding (t + c) - c into t.
inline float RoundNearestEven(float t) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (t + kMagic) - kMagic;
}

// The values sharing one scale: `rows` runs of n values, run r at x + r * stride; value i of every run
// weighs importance[i] (1 when null). A group is one run; a per-tensor scale spans all rows.
struct Span {
  const float* x;
  int64_t n;
  int64_t rows;
  int64_t stride;
  const float* importance;

  float Weight(int64_t i) const { return importance == nullptr ? 1.0f : importance[i]; }
  template <typename F>
  void ForEach(F&& f) const {
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = x + r * stride;
      for (int64_t i = 0; i < n; ++i) f(row[i], Weight(i));
    }
  }
};

// Integer code for x/scale + zero, clamped to [0, qmax]; `inv` is 1/scale (0 when the scale is 0).
inline int CodeOf(float x, float inv, int zero, int qmax) {
  const float limit = static_cast<float>(qmax + 1);
  const float t = std::clamp(x * inv, -limit, limit);
  const int q = static_cast<int>(RoundNearestEven(t)) + zero;
  return std::clamp(q, 0, qmax);
}

// Weighted sums over a span for the codes q chosen with one (1/scale, zero): enough to give, in closed
// form, the least-squares scale and the squared error of those codes under any (scale, zero).
struct CodeSums {
  double w = 0, q = 0, x = 0, qq = 0, xq = 0;
};

// Each candidate costs one pass (its codes and their sums); the few best by the closed-form error of those
// codes are then judged exactly, with the codes re-rounded against the FP16 scale, as they will be stored.
struct Search {
  static constexpr int kFinalists = 4;

  Search(Span span_, int bits_) : span(span_), bits(bits_), qmax((1 << bits_) - 1) {
    span.ForEach([&](float x, float w) { sum_wxx += static_cast<double>(w) * x * x; });
  }

  Span span;
  int bits;
  int qmax;
  double sum_wxx = 0.0;
  struct Candidate {
    double estimate = 0.0;
    IntGroupParams params;
  };
  Candidate finalists[kFinalists];
  int n_finalists = 0;

  // Weighted squared error of storing the span with (scale, zero); the scale must be FP16-exact.
  double Error(float scale, int zero) const {
    const float inv = scale == 0.0f ? 0.0f : 1.0f / scale;
    double err = 0.0;
    span.ForEach([&](float x, float w) {
      const float d = x - scale * static_cast<float>(CodeOf(x, inv, zero, qmax) - zero);
      err += static_cast<double>(w) * d * d;
    });
    return err;
  }

  CodeSums Sums(float inv, int zero) const {
    CodeSums s;
    span.ForEach([&](float x, float w) {
      const double q = CodeOf(x, inv, zero, qmax);
      s.w += w;
      s.q += w * q;
      s.x += w * x;
      s.qq += w * q * q;
      s.xq += w * x * q;
    });
    return s;
  }

  // The error of the summed codes under (scale, zero), the scale first rounded to FP16; kept if among
  // the best few.
  void Offer(float scale, int zero, const CodeSums& s) {
    if (!std::isfinite(scale)) return;
    const float s16 = RoundToF16(scale);
    const double z = zero;
    const double sxl = s.xq - z * s.x;
    const double sll = s.qq - 2.0 * z * s.q + z * z * s.w;
    const double estimate = sum_wxx - 2.0 * s16 * sxl + static_cast<double>(s16) * s16 * sll;
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

  // The least-squares scale for the codes with their zero kept: s = sum w x l / sum w l^2, l = q - zero.
  void OfferRefit(int zero, const CodeSums& s) {
    const double z = zero;
    const double sll = s.qq - 2.0 * z * s.q + z * z * s.w;
    if (sll > 0.0) Offer(static_cast<float>((s.xq - z * s.x) / sll), zero, s);
  }

  // The least-squares fit x ~ a * q + b, its -b/a rounded to the nearest representable zero-point, and the
  // scale refitted for that zero.
  void OfferAffine(const CodeSums& s) {
    const double det = s.w * s.qq - s.q * s.q;
    if (!(det > 0.0)) return;
    const double a = (s.w * s.xq - s.q * s.x) / det;
    if (!(a > 0.0)) return;
    const double b = (s.x - a * s.q) / s.w;
    OfferRefit(static_cast<int>(std::clamp(std::nearbyint(-b / a), 0.0, static_cast<double>(qmax))), s);
  }

  IntGroupParams Finish(int empty_zero) const {
    IntGroupParams best{0.0f, empty_zero};
    double best_error = sum_wxx;  // scale 0: every weight read as 0
    for (int i = 0; i < n_finalists; ++i) {
      const double err = Error(finalists[i].params.scale, finalists[i].params.zero);
      if (err < best_error) {
        best_error = err;
        best = finalists[i].params;
      }
    }
    return best;
  }

  // Symmetric: the codes -nmax..nmax-1 around zero = nmax. As ggml's make_qx_quants, the largest-magnitude
  // value m is mapped onto -nmax (or nmax-1) with denominators near those, plus clipping ratios down to
  // 0.5; every candidate's codes get their least-squares scale.
  IntGroupParams RunSymmetric() {
    const int nmax = 1 << (bits - 1);
    float m = 0.0f;
    span.ForEach([&](float x, float) {
      if (std::fabs(x) > std::fabs(m)) m = x;
    });
    if (m == 0.0f) return {0.0f, nmax};
    for (const int sign : {-1, 1}) {
      const float base = sign < 0 ? static_cast<float>(nmax) : static_cast<float>(nmax - 1);
      auto try_denominator = [&](float d) {
        const float scale = sign * m / d;  // code - zero = x / scale: m lands on sign * d
        const CodeSums sums = Sums(1.0f / scale, nmax);
        Offer(scale, nmax, sums);
        OfferRefit(nmax, sums);
      };
      for (int is = -9; is <= 9; ++is) {
        const float d = base + 0.1f * static_cast<float>(is);
        if (d > 0.25f) try_denominator(d);
      }
      for (int k = 1; k <= 10; ++k) try_denominator(base / (1.0f - 0.05f * static_cast<float>(k)));
    }
    return Finish(nmax);
  }

  // Asymmetric: the range [min(x,0), max(x,0)] shrunk by ratios down to 0.525 (AWQ's clipping grid) and
  // divided into qmax +- 0.9 steps (ggml's make_qkx2_quants); each candidate as is, with its scale
  // refitted, and refitted by least squares to an integer zero-point.
  IntGroupParams RunAsymmetric() {
    float lo = 0.0f, hi = 0.0f;
    span.ForEach([&](float x, float) {
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    });
    if (hi == lo) return {0.0f, 0};
    auto try_range = [&](float range_lo, float range_hi, float steps) {
      const float scale = (range_hi - range_lo) / steps;
      if (!(scale > 0.0f) || !std::isfinite(scale)) return;
      const int zero =
          static_cast<int>(std::clamp(std::nearbyint(-range_lo / scale), 0.0f, static_cast<float>(qmax)));
      const CodeSums sums = Sums(1.0f / scale, zero);
      Offer(scale, zero, sums);
      OfferRefit(zero, sums);
      OfferAffine(sums);
    };
    const float q = static_cast<float>(qmax);
    for (int k = 0; k < 20; ++k) {
      const float r = 1.0f - 0.025f * static_cast<float>(k);
      try_range(r * lo, r * hi, q);
    }
    for (int is = -9; is <= 9; ++is) {
      if (is != 0 && q + 0.1f * static_cast<float>(is) > 0.25f) try_range(lo, hi, q + 0.1f * static_cast<float>(is));
    }
    return Finish(0);
  }
};

IntGroupParams SearchSpan(Span span, int bits, bool symmetric) {
  if (span.importance != nullptr) {
    double total = 0.0;
    for (int64_t i = 0; i < span.n; ++i) total += span.importance[i];
    if (total == 0.0) span.importance = nullptr;  // nothing to weigh by: plain squared error
  }
  Search search(span, bits);
  return symmetric ? search.RunSymmetric() : search.RunAsymmetric();
}

void WriteRow(const IntRowLayout& layout, const float* x, const IntGroupParams* params, int64_t params_stride,
              uint8_t* row) {
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
    for (int64_t i = 0; i < layout.GroupLength(k); ++i) {
      WritePackedCode(codes, i, layout.bits, static_cast<uint32_t>(CodeOf(gx[i], inv, p.zero, qmax)));
    }
  }
}

}  // namespace

int IntCode(float x, const IntGroupParams& params, int bits) {
  return CodeOf(x, params.scale == 0.0f ? 0.0f : 1.0f / params.scale, params.zero, (1 << bits) - 1);
}

IntGroupParams SearchIntGroupParams(const float* x, int64_t n, const float* importance, int bits, bool symmetric) {
  MIXQ_CHECK(bits >= 2 && bits <= 8);
  return SearchSpan(Span{x, n, 1, n, importance}, bits, symmetric);
}

void QuantizeIntMatrix(DType dtype, const float* src, int64_t rows, int64_t cols, int64_t group, bool per_tensor,
                       std::byte* dst, const float* importance) {
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

  if (per_tensor) {
    const IntGroupParams p = SearchSpan(Span{src, cols, rows, cols, importance}, traits.bits, traits.symmetric);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      WriteRow(layout, src + r * cols, &p, 0, out + static_cast<size_t>(r) * layout.row_bytes);
    }
    return;
  }
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<IntGroupParams> params(static_cast<size_t>(layout.n_groups));
    const float* x = src + r * cols;
    for (int64_t k = 0; k < layout.n_groups; ++k) {
      const int64_t start = layout.GroupStart(k);
      params[static_cast<size_t>(k)] =
          SearchSpan(Span{x + start, layout.GroupLength(k), 1, 0, importance == nullptr ? nullptr : importance + start},
                     traits.bits, traits.symmetric);
    }
    WriteRow(layout, x, params.data(), 1, out + static_cast<size_t>(r) * layout.row_bytes);
  }
}

}  // namespace mixq
