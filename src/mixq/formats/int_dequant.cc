// Reading mixq INT rows: scale * (code - zero) for every weight, group by group.
#include "mixq/formats/int_dequant.h"

#include "mixq/base/check.h"
#include "mixq/formats/float16.h"
#include "mixq/tensor/int_layout.h"

namespace mixq {

void DequantizeIntRow(DType dtype, const void* src, float* dst, int64_t n, int64_t group) {
  MIXQ_CHECK(IsIntFormat(dtype));
  const IntRowLayout layout(dtype, n, group);
  const auto* row = static_cast<const uint8_t*>(src);
  for (int64_t k = 0; k < layout.n_groups; ++k) {
    uint16_t scale_bits;
    std::memcpy(&scale_bits, row + 2 * k, sizeof(scale_bits));
    const float scale = F16ToF32(scale_bits);
    const int zero = layout.symmetric ? layout.SymmetricZero()
                                      : static_cast<int>(ReadPackedCode(row + layout.zeros_offset, k, layout.bits));
    const uint8_t* codes = row + layout.GroupCodesOffset(k);
    float* out = dst + layout.GroupStart(k);
    const int64_t len = layout.GroupLength(k);
    for (int64_t i = 0; i < len; ++i) {
      out[i] = scale * static_cast<float>(static_cast<int>(ReadPackedCode(codes, i, layout.bits)) - zero);
    }
  }
}

}  // namespace mixq
