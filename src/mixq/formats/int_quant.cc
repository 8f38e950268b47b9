// RTN quantization into mixq INT rows: a grid of candidate scales per group, each refitted by least squares
// and judged by its (importance-weighted) squared error with the scale rounded to FP16.
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

struct Search {
  Span span;
  int bits;
  int qmax;
  double best_error = std::numeric_limits<double>::infinity();
  IntGroupParams best;

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

  void Consider(float scale, int zero) {
    if (!std::isfinite(scale)) return;
    const float s16 = RoundToF16(scale);
    const double err = Error(s16, zero);
    if (err < best_error) {
      best_error = err;
      best = {s16, zero};
    }
  }

  // Least-squares scale for the codes chosen with (inv, zero), with the zero kept: s = <wx, l> / <wl, l>
  // where l = code - zero.
  void RefitScale(float inv, int zero) {
    double sxl = 0.0, sll = 0.0;
    span.ForEach([&](float x, float w) {
      const double l = CodeOf(x, inv, zero, qmax) - zero;
      sxl += w * x * l;
      sll += w * l * l;
    });
    if (sll > 0.0) Consider(static_cast<float>(sxl / sll), zero);
  }

  // Least-squares fit x ~ a * code + b for the codes chosen with (inv, zero), then the integer zero
  // nearest -b/a and the scale refitted for it.
  void RefitAffine(float inv, int zero) {
    double sw = 0.0, sq = 0.0, sx = 0.0, sqq = 0.0, sxq = 0.0;
    span.ForEach([&](float x, float w) {
      const double q = CodeOf(x, inv, zero, qmax);
      sw += w;
      sq += w * q;
      sx += w * x;
      sqq += w * q * q;
      sxq += w * x * q;
    });
    const double det = sw * sqq - sq * sq;
    if (!(det > 0.0)) return;
    const double a = (sw * sxq - sq * sx) / det;
    const double b = (sx - a * sq) / sw;
    if (!(a > 0.0)) return;
    const int z = static_cast<int>(std::clamp(std::nearbyint(-b / a), 0.0, static_cast<double>(qmax)));
    // The same codes read against the new zero: refit the scale for them.
    double sxl = 0.0, sll = 0.0;
    span.ForEach([&](float x, float w) {
      const double l = CodeOf(x, inv, zero, qmax) - z;
      sxl += w * x * l;
      sll += w * l * l;
    });
    if (sll > 0.0) Consider(static_cast<float>(sxl / sll), z);
  }

  // Symmetric: the codes -nmax..nmax-1 around zero = nmax. As ggml's make_qx_quants, the largest-magnitude
  // value m is mapped onto -nmax (or nmax-1) with denominators near those, plus clipping ratios down to
  // 0.5; every candidate's codes get their least-squares scale.
  void RunSymmetric() {
    const int nmax = 1 << (bits - 1);
    float m = 0.0f;
    span.ForEach([&](float x, float) {
      if (std::fabs(x) > std::fabs(m)) m = x;
    });
    best = {0.0f, nmax};
    best_error = Error(0.0f, nmax);
    if (m == 0.0f) return;
    for (const int sign : {-1, 1}) {
      const float base = sign < 0 ? static_cast<float>(nmax) : static_cast<float>(nmax - 1);
      auto try_denominator = [&](float d) {
        const float s = sign * m / d;  // code - zero = x / s: m lands on sign * d
        Consider(s, nmax);
        RefitScale(1.0f / s, nmax);
      };
      for (int is = -9; is <= 9; ++is) {
        const float d = base + 0.1f * static_cast<float>(is);
        if (d > 0.25f) try_denominator(d);
      }
      for (int k = 1; k <= 10; ++k) try_denominator(base / (1.0f - 0.05f * static_cast<float>(k)));
    }
  }

  // Asymmetric: the range [min(x,0), max(x,0)] shrunk by ratios down to 0.525 (AWQ's clipping grid) and
  // divided into qmax +- 0.9 steps (ggml's make_qkx2_quants); each candidate as is, and refitted by least
  // squares to an integer zero-point.
  void RunAsymmetric() {
    float lo = 0.0f, hi = 0.0f;
    span.ForEach([&](float x, float) {
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    });
    best = {0.0f, 0};
    best_error = Error(0.0f, 0);
    if (hi == lo) return;
    auto try_range = [&](float range_lo, float range_hi, float steps) {
      const float s = (range_hi - range_lo) / steps;
      if (!(s > 0.0f) || !std::isfinite(s)) return;
      const int zero = static_cast<int>(std::clamp(std::nearbyint(-range_lo / s), 0.0f, static_cast<float>(qmax)));
      Consider(s, zero);
      RefitAffine(1.0f / s, zero);
    };
    const float q = static_cast<float>(qmax);
    for (int k = 0; k < 20; ++k) {
      const float r = 1.0f - 0.025f * static_cast<float>(k);
      try_range(r * lo, r * hi, q);
    }
    for (int is = -9; is <= 9; ++is) {
      if (is != 0 && q + 0.1f * static_cast<float>(is) > 0.25f) try_range(lo, hi, q + 0.1f * static_cast<float>(is));
    }
  }
};

IntGroupParams SearchSpan(Span span, int bits, bool symmetric) {
  if (span.importance != nullptr) {
    double total = 0.0;
    for (int64_t i = 0; i < span.n; ++i) total += span.importance[i];
    if (total == 0.0) span.importance = nullptr;  // nothing to weigh by: plain squared error
  }
  Search search{span, bits, (1 << bits) - 1, std::numeric_limits<double>::infinity(), IntGroupParams{}};
  if (symmetric) {
    search.RunSymmetric();
  } else {
    search.RunAsymmetric();
  }
  return search.best;
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
