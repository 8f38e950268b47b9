// Row codecs between float and F32/F16/BF16; RowToFloat also reads ggml's and mixq's quantized types.
//
// HasFloatCodec stays F32/F16/BF16 only: it means "both directions", and HasMatMulKernel and the GGUF
// loader build on it. Reading quantized rows is asked through HasDequantizer (ggml_dequant.h).
#include "mixq/formats/convert.h"

#include <cstring>

#include "mixq/base/check.h"
#include "mixq/formats/float16.h"
#include "mixq/formats/fp8.h"
#include "mixq/formats/ggml_dequant.h"
#include "mixq/formats/int_dequant.h"
#include "mixq/tensor/sparse_rows.h"
#include "mixq/tensor/tensor.h"

namespace mixq {

bool HasFloatCodec(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

bool CanReadAsFloat(DType dtype) {
  return HasFloatCodec(dtype) || HasDequantizer(dtype) || IsIntFormat(dtype) || dtype == DType::kFp8E4M3;
}

void RowToFloat(DType dtype, const void* src, float* dst, int64_t n, int64_t group) {
  if (IsIntFormat(dtype)) {
    DequantizeIntRow(dtype, src, dst, n, group);
    return;
  }
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kFp8E4M3:
      DequantizeFp8Row(src, dst, n);
      return;
    case DType::kF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = F16ToF32(h[i]);
      return;
    }
    case DType::kBF16: {
      const auto* b = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = BF16ToF32(b[i]);
      return;
    }
    default:
      MIXQ_CHECK(HasDequantizer(dtype) && "RowToFloat: no codec for this dtype");
      DequantizeRow(dtype, src, dst, n);
      return;
  }
}

void RowFromFloat(DType dtype, const float* src, void* dst, int64_t n) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = F32ToF16(src[i]);
      return;
    }
    case DType::kBF16: {
      auto* b = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) b[i] = F32ToBF16(src[i]);
      return;
    }
    default:
      MIXQ_CHECK(false && "RowFromFloat: no codec for this dtype");
  }
}

void TensorRowToFloat(const TensorView& t, int64_t r, float* dst) {
  RowToFloat(t.dtype, t.row(r), dst, t.cols(), t.group);
  AddSparseRow(t.salient, r, dst);
}

void TensorToFloat(const TensorView& t, float* dst) {
  const int64_t rows = t.rows();
  const int64_t cols = t.cols();
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) TensorRowToFloat(t, r, dst + r * cols);
}

}  // namespace mixq
