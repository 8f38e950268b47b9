// A check the interleaved-row tests of the ggml and INT kernels share (ggml_dot_test.cc, int_dot_test.cc).
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "mixq/kernels/packed_gemm_internal.h"
#include "mixq/kernels/quant_kernel.h"

namespace mixq::testing {

// unpack_rows of each interleaved group equals the packed format's unpack_row of each of its rows, bit for
// bit (codes, d, m): the packed GEMM reads whole groups through it.
inline void ExpectUnpackRowsEqualsUnpackRow(const QuantKernel& k, const uint8_t* groups, size_t group_bytes, int64_t n_groups,
                                     const uint8_t* rows, size_t stride, int64_t n, int64_t group) {
  ASSERT_NE(k.packed, nullptr);
  ASSERT_NE(k.interleaved->unpack_rows, nullptr);
  const PackedGemmFormat& f = *k.packed;
  const int64_t blocks = f.block_count(n, group);
  const size_t codes_size = static_cast<size_t>(blocks * f.width);
  for (int64_t g = 0; g < n_groups; ++g) {
    std::vector<std::vector<int8_t>> codes(8, std::vector<int8_t>(codes_size, 99));
    std::vector<std::vector<float>> d(8, std::vector<float>(static_cast<size_t>(blocks), -1.0f));
    std::vector<std::vector<float>> m = d;
    int8_t* c[8];
    float* dp[8];
    float* mp[8];
    for (int r = 0; r < 8; ++r) c[r] = codes[r].data(), dp[r] = d[r].data(), mp[r] = m[r].data();
    k.interleaved->unpack_rows(groups + g * group_bytes, n, group, c, dp, mp);
    for (int r = 0; r < 8; ++r) {
      std::vector<int8_t> want_codes(codes_size);
      std::vector<float> want_d(static_cast<size_t>(blocks)), want_m(static_cast<size_t>(blocks));
      f.unpack_row(rows + (g * 8 + r) * stride, n, group, want_codes.data(), want_d.data(), want_m.data());
      ASSERT_EQ(codes[r], want_codes) << "codes, group " << g << " row " << r;
      ASSERT_EQ(d[r], want_d) << "d, group " << g << " row " << r;
      ASSERT_EQ(m[r], want_m) << "m, group " << g << " row " << r;
    }
  }
}

// unpack_panel of each group equals the packed format's unpack_row of each of its rows laid out as
// packed_gemm_internal.h describes the panel (codes + bias at [s][r][i], then d[8], m[8] per block), byte
// for byte, for the AVX2 micro-kernel's bias (the format's code_bias) and the VNNI one's (128).
inline void ExpectUnpackPanelEqualsUnpackRow(const QuantKernel& k, const uint8_t* groups, size_t group_bytes,
                                             int64_t n_groups, const uint8_t* rows, size_t stride, int64_t n,
                                             int64_t group) {
  ASSERT_NE(k.packed, nullptr);
  ASSERT_NE(k.interleaved->unpack_panel, nullptr);
  const PackedGemmFormat& f = *k.packed;
  const int64_t blocks = f.block_count(n, group);
  const size_t block_bytes = packed_gemm::PanelBlockBytes(f.width);
  const size_t codes_size = static_cast<size_t>(blocks * f.width);
  for (const int bias : {f.code_bias, 128}) {
    for (int64_t g = 0; g < n_groups; ++g) {
      std::vector<uint8_t> want(block_bytes * static_cast<size_t>(blocks));
      for (int r = 0; r < 8; ++r) {
        std::vector<int8_t> codes(codes_size);
        std::vector<float> d(static_cast<size_t>(blocks)), m(static_cast<size_t>(blocks));
        f.unpack_row(rows + (g * 8 + r) * stride, n, group, codes.data(), d.data(), m.data());
        for (int64_t b = 0; b < blocks; ++b) {
          uint8_t* block = want.data() + b * block_bytes;
          for (int j = 0; j < f.width; ++j) {
            block[((j / 4) * 8 + r) * 4 + j % 4] = static_cast<uint8_t>(codes[b * f.width + j] + bias);
          }
          std::memcpy(block + 8 * f.width + 4 * r, &d[b], 4);
          std::memcpy(block + 8 * f.width + 32 + 4 * r, &m[b], 4);
        }
      }
      std::vector<uint8_t> got(want.size(), 0xcd);
      k.interleaved->unpack_panel(groups + g * group_bytes, n, group, bias, got.data());
      for (size_t i = 0; i < want.size(); ++i) {
        const size_t b = i / block_bytes, at = i % block_bytes;
        ASSERT_EQ(got[i], want[i]) << "bias " << bias << ", group " << g << ", block " << b << ", "
                                   << (at < 8 * static_cast<size_t>(f.width) ? "code byte " : "scale byte ") << at;
      }
    }
  }
}

}  // namespace mixq::testing
