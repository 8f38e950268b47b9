// MatMul over quantized weights: the activations are quantized once, then each output is one integer
// dot product of a stored weight row with a quantized activation row, never a dequantized matrix.
//
// Decode and prefill both walk blocks of kRowBlock rows split across threads; kernels with `dot_rows` get a whole block with
// every token per call (sharing each activation block among rows, and each weight block among tokens).
// Decode streams every weight row once. In prefill a block's weights (16 rows of a 4096-wide Q4_0 matrix: 36 KiB)
// stay in L2 while every token's activation row passes by, so the weights are read from memory once per
// call, not once a token. A salient (sparse FP16) part is added by each thread for its rows in the same walk.
#include <algorithm>
#include <array>
#include <span>

#include "mixq/base/aligned_buffer.h"
#include "mixq/base/check.h"
#include "mixq/base/threads.h"
#include "mixq/kernels/matmul.h"
#include "mixq/kernels/packed_gemm.h"
#include "mixq/kernels/quant_kernel.h"
#include "mixq/kernels/sparse_dot.h"
#include "mixq/tensor/tensor.h"

namespace mixq {
namespace {

constexpr int64_t kRowBlock = 16;
// Below this many multiply-adds one thread is faster than waking the others (as in matmul.cc).
constexpr int64_t kMinParallelMacs = int64_t{1} << 17;

// Whether MatMulQuantized walks w's rows interleaved 8 at a time (decode and small batches; larger
// batches take the packed GEMM).
bool WalksInterleavedRows(const QuantKernel& kernel, const TensorView& w, int64_t n_tokens) {
  return w.interleaved != nullptr && kernel.interleaved != nullptr && !UsePackedGemm(kernel, n_tokens);
}

// x's n_tokens rows of cols values in the kernel's activation layout, in the calling thread's scratch.
const std::byte* QuantizeActivations(const QuantKernel& kernel, int64_t cols, int64_t group, const float* x,
                                     int64_t n_tokens, bool parallel) {
  const size_t act_bytes = kernel.activation_bytes(cols, group);
  std::byte* act = ActivationScratch(act_bytes * static_cast<size_t>(n_tokens));
#pragma omp parallel for schedule(static) if (parallel && n_tokens > 1)
  for (int64_t t = 0; t < n_tokens; ++t) {
    kernel.quantize_activation(x + t * cols, act + static_cast<size_t>(t) * act_bytes, cols, group);
  }
  return act;
}

// The most matrices one walk takes (Q, K and V are three); more go one MatMul each.
constexpr size_t kMaxProductsPerWalk = 3;

// Rows interleaved 8 at a time, of one or more matrices of the kernel's type that share the input, the
// columns and the group: the input is quantized once, and the threads walk the groups of all the
// matrices as one range (one matrix after the other), one dot_groups call per piece of a range within a
// matrix (the kernel prepares each token's activation blocks once per call). Several matrices in one
// walk meet one barrier instead of one each.
void WalkInterleavedRows(const QuantKernel& kernel, std::span<const MatMulProduct> products, const float* x,
                         int64_t n_tokens) {
  constexpr int kRows = InterleavedRows::kRows;
  MIXQ_CHECK(!products.empty() && products.size() <= kMaxProductsPerWalk);
  const int64_t cols = products[0].w->cols();
  const int64_t group = products[0].w->group;
  std::array<int64_t, kMaxProductsPerWalk + 1> first_group{};
  for (size_t i = 0; i < products.size(); ++i) {
    const TensorView& w = *products[i].w;
    MIXQ_CHECK(w.rows() % kRows == 0 && w.cols() == cols && w.group == group);
    first_group[i + 1] = first_group[i] + w.rows() / kRows;
  }
  const int64_t n_groups = first_group[products.size()];
  const bool parallel = n_groups * kRows * cols * n_tokens >= kMinParallelMacs;
  const std::byte* act = QuantizeActivations(kernel, cols, group, x, n_tokens, parallel);
  const size_t act_bytes = kernel.activation_bytes(cols, group);
  const size_t group_bytes = kernel.interleaved->group_bytes(cols, group);
  const auto run_groups = [&](int64_t g0, int64_t g1) {
    for (size_t i = 0; i < products.size(); ++i) {
      const int64_t begin = std::max(g0, first_group[i]) - first_group[i];
      const int64_t end = std::min(g1, first_group[i + 1]) - first_group[i];
      if (begin >= end) continue;
      const TensorView& w = *products[i].w;
      float* y = products[i].y;
      kernel.interleaved->dot_groups(w.interleaved + static_cast<size_t>(begin) * group_bytes, group_bytes,
                                     end - begin, act, act_bytes, n_tokens, cols, group, y + begin * kRows,
                                     w.rows());
      if (!w.salient.empty()) {
        AddSparseProducts(w.salient, begin * kRows, end * kRows, x, cols, n_tokens, y, w.rows());
      }
    }
  };
  // Tail chunks of at least 2 groups: Q4_0's kernel walks groups in pairs.
  ParallelForStreaming(n_groups, 2, parallel, run_groups);
}

}  // namespace

std::byte* ActivationScratch(size_t bytes) {
  thread_local AlignedBuffer activations;
  if (activations.size() < bytes) activations.Resize(bytes);
  return activations.data();
}

void MatMulQuantized(const QuantKernel& kernel, const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  const int64_t rows = w.rows();
  const int64_t cols = w.cols();
  if (rows == 0 || n_tokens <= 0) return;
  MIXQ_CHECK(w.dtype == kernel.weight_type);
  if (UsePackedGemm(kernel, n_tokens)) {
    PackedGemm(kernel, w, x, n_tokens, y);
    return;
  }
  if (WalksInterleavedRows(kernel, w, n_tokens)) {
    const MatMulProduct product{&w, y};
    WalkInterleavedRows(kernel, {&product, 1}, x, n_tokens);
    return;
  }
  const size_t act_bytes = kernel.activation_bytes(cols, w.group);
  const bool parallel = rows * cols * n_tokens >= kMinParallelMacs;
  const std::byte* act = QuantizeActivations(kernel, cols, w.group, x, n_tokens, parallel);
  const size_t row_bytes = w.row_bytes();
  // Decode is the same walk with one token: blocks of kRowBlock rows split across threads.
  const auto row = [&](int64_t r) { return w.data + static_cast<size_t>(r) * row_bytes; };
  const int64_t n_blocks = (rows + kRowBlock - 1) / kRowBlock;
  const auto dense_block = [&](int64_t b) {
    const int64_t r0 = b * kRowBlock;
    const int64_t r1 = std::min(rows, r0 + kRowBlock);
    if (kernel.dot_rows != nullptr) {
      kernel.dot_rows(row(r0), row_bytes, r1 - r0, act, act_bytes, n_tokens, cols, w.group, y + r0, rows);
      return;
    }
    for (int64_t t = 0; t < n_tokens; ++t) {
      const std::byte* a = act + static_cast<size_t>(t) * act_bytes;
      float* yt = y + t * rows;
      for (int64_t r = r0; r < r1; ++r) yt[r] = kernel.dot(row(r), a, cols, w.group);
    }
  };
  // Salient weights: each thread adds the sparse part of a range of rows right after their dense blocks,
  // in the same parallel walk. Not block by block: the gathers of float x between blocks pushed the
  // quantized activations out of L1 and slowed the dense kernel by 15-20% (bench/salient_bench.cc). The
  // balanced split against equal halves on the one-row kernels: Q6_K 0.0% (7 of 12 rounds), Q5_K +3.7%
  // (8 of 12).
  ParallelForStreaming(n_blocks, 1, parallel, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) dense_block(b);
    if (!w.salient.empty()) {
      AddSparseProducts(w.salient, b0 * kRowBlock, std::min(rows, b1 * kRowBlock), x, cols, n_tokens, y, rows);
    }
  });
}

void MatMulSameInput(std::span<const MatMulProduct> products, const float* x, int64_t n_tokens) {
  if (products.empty() || n_tokens <= 0) return;
  const TensorView& first = *products[0].w;
  const QuantKernel* kernel = first.activation == ActivationQuant::kFormat ? FindQuantKernel(first.dtype) : nullptr;
  bool one_walk = kernel != nullptr && products.size() <= kMaxProductsPerWalk;
  for (const MatMulProduct& p : products) {
    const TensorView& w = *p.w;
    one_walk = one_walk && w.dtype == first.dtype && w.activation == ActivationQuant::kFormat &&
               w.cols() == first.cols() && w.group == first.group && WalksInterleavedRows(*kernel, w, n_tokens);
  }
  if (!one_walk) {
    for (const MatMulProduct& p : products) MatMul(*p.w, x, n_tokens, p.y);
    return;
  }
  WalkInterleavedRows(*kernel, products, x, n_tokens);
}

}  // namespace mixq
