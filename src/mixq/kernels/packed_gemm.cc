// The packed prefill GEMM's driver: activations quantized once per token (by the format's own quantizer)
// and read as blocks; 16-row tiles split across threads, each tile's rows decoded once into two 8-row
// panels, then every token passes over the panel in column chunks that stay in L1.
#include "mixq/kernels/packed_gemm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "mixq/base/aligned_buffer.h"
#include "mixq/base/check.h"
#include "mixq/kernels/cpu_features.h"
#include "mixq/kernels/packed_gemm_internal.h"
#include "mixq/kernels/sparse_dot.h"
#include "mixq/tensor/tensor.h"

namespace mixq {
namespace packed_gemm {
namespace {

constexpr int64_t kTileRows = kRowsPerGroup * kMaxRowGroups;
// Values per column chunk: a chunk of the two panels (2 x 32 blocks x 320 bytes = 20 KiB) and four tokens'
// activations (4 KiB) stay in the 32 KiB L1 while the micro-kernel runs over them.
constexpr int64_t kChunkValues = 1024;
constexpr size_t kAlign = 64;

size_t RoundUp(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// One token's expanded activation row: q (blocks x width bytes), then scale, corr, msum (blocks each).
struct ActivationLayout {
  int64_t blocks = 0;
  int width = 0;
  size_t q_bytes = 0;
  size_t per_block_bytes = 0;
  size_t stride = 0;

  ActivationLayout(int64_t blocks_, int width_) : blocks(blocks_), width(width_) {
    q_bytes = RoundUp(static_cast<size_t>(blocks) * width);
    per_block_bytes = RoundUp(static_cast<size_t>(blocks) * 4);
    stride = q_bytes + 3 * per_block_bytes;
  }
  PackedActivationRow Row(std::byte* base, int64_t t) const {
    std::byte* p = base + static_cast<size_t>(t) * stride;
    return {reinterpret_cast<const int8_t*>(p), reinterpret_cast<const float*>(p + q_bytes),
            reinterpret_cast<const int32_t*>(p + q_bytes + per_block_bytes),
            reinterpret_cast<const float*>(p + q_bytes + 2 * per_block_bytes)};
  }
};

std::byte* ThreadBuffer(AlignedBuffer& buffer, size_t bytes) {
  if (buffer.size() < bytes) buffer.Resize(bytes);
  return buffer.data();
}

// Quantizes token t with the kernel's own quantizer, then writes its blocks, corrections (for weight codes
// stored with `bias` added) and offset factors.
void ExpandToken(const QuantKernel& kernel, const float* x, int64_t cols, int64_t group, int bias,
                 const ActivationLayout& layout, std::byte* row) {
  thread_local AlignedBuffer quantized;
  std::byte* tmp = ThreadBuffer(quantized, kernel.activation_bytes(cols, group));
  kernel.quantize_activation(x, tmp, cols, group);
  auto* q = reinterpret_cast<int8_t*>(row);
  auto* scale = reinterpret_cast<float*>(row + layout.q_bytes);
  auto* corr = reinterpret_cast<int32_t*>(row + layout.q_bytes + layout.per_block_bytes);
  auto* msum = reinterpret_cast<float*>(row + layout.q_bytes + 2 * layout.per_block_bytes);
  // `corr` holds the sums until they become corrections below.
  kernel.packed->expand_activation(tmp, cols, group, q, scale, corr, msum);
  const bool spans = kernel.packed->scale_span > 1;
  for (int64_t b = 0; b < layout.blocks; ++b) {
    if (spans) msum[b] = static_cast<float>(corr[b]);  // the micro-kernels scale a span's sum once
    corr[b] *= -bias;
  }
}

// Four bytes plus four bytes, each byte mod 256 (no carry into its neighbour).
uint32_t AddBytes(uint32_t a, uint32_t b) { return ((a & 0x7f7f7f7fu) + (b & 0x7f7f7f7fu)) ^ ((a ^ b) & 0x80808080u); }

// Bytes of the scratch PackTile decodes one row group into: 8 rows of codes, then their d and m.
size_t UnpackBytes(int64_t blocks, int width) {
  return kRowsPerGroup * (RoundUp(static_cast<size_t>(blocks) * width) + RoundUp(static_cast<size_t>(blocks) * 8));
}

// Decodes rows [r0, r0 + n_rows) (n_rows <= 16) into two row-group panels at `panel`, codes stored + bias.
// A row group's 8 rows are decoded first (32 KiB of codes for 4096 columns), then its panel is written
// block after block, front to back: written row by row instead, each row touched every block's cache
// lines of an 80 KiB panel, and packing cost as much as 4 tokens of the micro-kernel on AVX2.
// Rows interleaved for decode (`interleaved` non-null; InterleaveForDecode makes them only for row counts
// that are multiples of 8, so a 16-row tile's groups are whole or past the end) are decoded a group at a
// time from the copy: prefill reads what decode reads, and the file's pages need not stay resident.
void PackTile(const PackedGemmFormat& format, const InterleavedRows* interleaved, const TensorView& w, int64_t r0,
              int64_t n_rows, int64_t blocks, int bias, std::byte* panel, std::byte* unpack) {
  const uint32_t bias4 = 0x01010101u * static_cast<uint8_t>(bias);
  const int width = format.width;
  const size_t block_bytes = PanelBlockBytes(width);
  const size_t group_stride = block_bytes * static_cast<size_t>(blocks);
  const size_t codes_bytes = RoundUp(static_cast<size_t>(blocks) * width);
  const size_t row_bytes = codes_bytes + RoundUp(static_cast<size_t>(blocks) * 8);
  int8_t* codes[kRowsPerGroup];
  float* d[kRowsPerGroup];
  float* m[kRowsPerGroup];
  for (int r = 0; r < kRowsPerGroup; ++r) {
    std::byte* row = unpack + r * row_bytes;
    codes[r] = reinterpret_cast<int8_t*>(row);
    d[r] = reinterpret_cast<float*>(row + codes_bytes);
    m[r] = d[r] + blocks;
  }
  constexpr int kRows = InterleavedRows::kRows;
  static_assert(kRows == kRowsPerGroup);
  for (int g = 0; g < kMaxRowGroups; ++g) {
    const int64_t first = r0 + g * kRowsPerGroup;
    const bool whole = g * kRowsPerGroup + kRowsPerGroup <= n_rows;
    if (interleaved != nullptr && whole) {
      MIXQ_CHECK(first % kRows == 0);
      const std::byte* group_src =
          w.interleaved + static_cast<size_t>(first / kRows) * interleaved->group_bytes(w.cols(), w.group);
      if (interleaved->unpack_panel != nullptr) {
        // Straight into the panel (most layouts: their runs are the panel's order already).
        interleaved->unpack_panel(group_src, w.cols(), w.group, bias, reinterpret_cast<uint8_t*>(panel + g * group_stride));
        continue;
      }
      interleaved->unpack_rows(group_src, w.cols(), w.group, codes, d, m);
    } else {
      MIXQ_CHECK(interleaved == nullptr || g * kRowsPerGroup >= n_rows);
      for (int r = 0; r < kRowsPerGroup; ++r) {
        const int64_t i = g * kRowsPerGroup + r;
        if (i < n_rows) {
          format.unpack_row(w.data + static_cast<size_t>(r0 + i) * w.row_bytes(), w.cols(), w.group, codes[r], d[r],
                            m[r]);
        } else {
          // Rows past the end: zero codes and zero scales, so they add nothing.
          std::memset(codes[r], 0, static_cast<size_t>(blocks) * width);
          std::fill(d[r], d[r] + 2 * blocks, 0.0f);
        }
      }
    }
    auto* out = reinterpret_cast<uint8_t*>(panel + g * group_stride);
    for (int64_t b = 0; b < blocks; ++b, out += block_bytes) {
      for (int s = 0; s < width / 4; ++s) {
        for (int r = 0; r < kRowsPerGroup; ++r) {
          uint32_t four;
          std::memcpy(&four, codes[r] + b * width + 4 * s, sizeof four);
          four = AddBytes(four, bias4);
          std::memcpy(out + (s * kRowsPerGroup + r) * 4, &four, sizeof four);
        }
      }
      auto* block_d = reinterpret_cast<float*>(out + 8 * width);
      for (int r = 0; r < kRowsPerGroup; ++r) {
        block_d[r] = d[r][b];
        block_d[kRowsPerGroup + r] = m[r][b];
      }
    }
  }
}

}  // namespace

void MicroKernelRef(const uint8_t* panel, size_t rowgroup_stride, int n_rowgroups, const PackedActivationRow* acts,
                    int n_tokens, int64_t b0, int64_t b1, const PackedGemmFormat& format, float* out) {
  const int width = format.width;
  const int span = format.scale_span;
  const size_t block_bytes = PanelBlockBytes(width);
  for (int t = 0; t < n_tokens; ++t) {
    for (int g = 0; g < n_rowgroups; ++g) {
      for (int r = 0; r < kRowsPerGroup; ++r) {
        float f = 0.0f;
        for (int64_t s = b0; s < b1; s += span) {
          float p = 0.0f;
          for (int64_t b = s; b < s + span; ++b) {
            const uint8_t* block = panel + g * rowgroup_stride + b * block_bytes;
            const auto* d = reinterpret_cast<const float*>(block + 8 * width);
            int32_t acc = acts[t].corr[b];
            for (int j = 0; j < width; ++j) {
              acc += static_cast<int32_t>(block[((j / 4) * kRowsPerGroup + r) * 4 + j % 4]) * acts[t].q[b * width + j];
            }
            if (span == 1) {
              f = std::fma(static_cast<float>(acc), d[r] * acts[t].scale[b], f);
              if (format.offset) f = std::fma(d[kRowsPerGroup + r], acts[t].msum[b], f);
            } else {
              p = std::fma(static_cast<float>(acc), d[r], p);
              if (format.offset) p = std::fma(d[kRowsPerGroup + r], acts[t].msum[b], p);
            }
          }
          if (span > 1) f = std::fma(p, acts[t].scale[s], f);
        }
        out[t * kMaxRowGroups * kRowsPerGroup + g * kRowsPerGroup + r] = f;
      }
    }
  }
}

}  // namespace packed_gemm

int64_t PackedGemmMinTokens() { return CpuHasAvx512Vnni() ? 4 : 32; }

bool UsePackedGemm(const QuantKernel& kernel, int64_t n_tokens) {
  return kernel.packed != nullptr && (CpuHasAvx512Vnni() || CpuHasAvx2()) && n_tokens >= PackedGemmMinTokens();
}

const char* PackedGemmIsa() { return CpuHasAvx512Vnni() ? "AVX512-VNNI" : CpuHasAvx2() ? "AVX2" : "none"; }

void PackedGemm(const QuantKernel& kernel, const TensorView& w, const float* x, int64_t n_tokens, float* y,
                bool reference) {
  using namespace packed_gemm;
  MIXQ_CHECK(kernel.packed != nullptr && w.dtype == kernel.weight_type);
  MIXQ_CHECK(reference || CpuHasAvx512Vnni() || CpuHasAvx2());
  const PackedGemmFormat& format = *kernel.packed;
  // The SIMD kernel this CPU runs fixes the panel's bias; the reference uses the same one (any bias gives
  // the same exact integer sums, so it is the oracle either way).
  MicroKernel simd = nullptr;
  int bias = 128;
#if defined(__x86_64__)
  if (CpuHasAvx512Vnni()) {
    simd = MicroKernelVnni;
  } else if (CpuHasAvx2()) {
    simd = MicroKernelAvx2;
    bias = format.code_bias;
    // The sign-trick path reads 8-bit codes as stored ^ 0x80, which holds only for c + 128.
    MIXQ_CHECK(format.code_bits >= 1 && format.code_bits <= 8 && (format.code_bits < 8 || bias == 128));
  }
#endif
  const MicroKernel micro = reference || simd == nullptr ? MicroKernelRef : simd;
  const int64_t rows = w.rows(), cols = w.cols();
  if (rows == 0 || n_tokens <= 0) return;
  const int width = format.width;
  const int64_t blocks = format.block_count(cols, w.group);
  const ActivationLayout layout(blocks, width);

  thread_local AlignedBuffer activations;
  std::byte* act = ThreadBuffer(activations, layout.stride * static_cast<size_t>(n_tokens));
  // The calling thread's buffer is read by every thread below; the parallel regions only fill and read it.
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n_tokens; ++t) {
    ExpandToken(kernel, x + t * cols, cols, w.group, bias, layout, act + static_cast<size_t>(t) * layout.stride);
  }

  const size_t group_stride = PanelBlockBytes(width) * static_cast<size_t>(blocks);
  const int64_t chunk_blocks = std::max<int64_t>(1, kChunkValues / width);
  MIXQ_CHECK(blocks % format.scale_span == 0 && chunk_blocks % format.scale_span == 0);
  const int64_t n_tiles = (rows + kTileRows - 1) / kTileRows;

#pragma omp parallel
  {
    const int n_threads = omp_get_num_threads();
    const int thread = omp_get_thread_num();
    const int64_t tile0 = n_tiles * thread / n_threads;
    const int64_t tile1 = n_tiles * (thread + 1) / n_threads;
    thread_local AlignedBuffer panel_buffer, unpack_buffer;
    std::byte* panel = ThreadBuffer(panel_buffer, kMaxRowGroups * group_stride);
    std::byte* unpack = ThreadBuffer(unpack_buffer, UnpackBytes(blocks, width));
    const InterleavedRows* interleaved = w.interleaved != nullptr ? kernel.interleaved : nullptr;
    for (int64_t tile = tile0; tile < tile1; ++tile) {
      const int64_t r0 = tile * kTileRows;
      const int64_t n_rows = std::min(kTileRows, rows - r0);
      const int n_groups = n_rows > kRowsPerGroup ? 2 : 1;
      PackTile(format, interleaved, w, r0, n_rows, blocks, bias, panel, unpack);
      for (int64_t b0 = 0; b0 < blocks; b0 += chunk_blocks) {
        const int64_t b1 = std::min(blocks, b0 + chunk_blocks);
        for (int64_t t0 = 0; t0 < n_tokens; t0 += kMaxTokens) {
          const int nt = static_cast<int>(std::min<int64_t>(kMaxTokens, n_tokens - t0));
          PackedActivationRow rows_t[kMaxTokens];
          for (int t = 0; t < nt; ++t) rows_t[t] = layout.Row(act, t0 + t);
          float out[kMaxTokens * kTileRows];
          micro(reinterpret_cast<const uint8_t*>(panel), group_stride, n_groups, rows_t, nt, b0, b1, format, out);
          for (int t = 0; t < nt; ++t) {
            float* yt = y + (t0 + t) * rows + r0;
            const float* o = out + t * kTileRows;
            if (b0 == 0) {
              std::memcpy(yt, o, static_cast<size_t>(n_rows) * sizeof(float));
            } else {
              for (int64_t r = 0; r < n_rows; ++r) yt[r] += o[r];
            }
          }
        }
      }
    }
    if (!w.salient.empty()) {
      AddSparseProducts(w.salient, tile0 * kTileRows, std::min(rows, tile1 * kTileRows), x, cols, n_tokens, y, rows);
    }
  }
}

}  // namespace mixq
