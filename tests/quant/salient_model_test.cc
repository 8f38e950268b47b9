// Salient weights on stories260K: the layer-by-layer pass (rtn, gptq, awq) with each criterion keeps
// exactly the planned count per linear, stores exact zeros there, and lowers each linear's error.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "mixq/formats/float16.h"
#include "mixq/formats/int_dequant.h"
#include "mixq/quant/calibration.h"
#include "mixq/quant/layerwise.h"
#include "mixq/quant/salient.h"
#include "stories_fixture.h"

namespace mixq {
namespace {

using testing::Stories;

const std::vector<std::vector<int32_t>>& Windows() {
  static const auto windows = SampleCalibrationWindows(Stories(), {testing::StoriesCalibrationFile(), 8, 128, 0});
  return windows;
}

std::map<std::string, std::optional<WeightFormat>> BlockFormats(const std::string& format) {
  std::map<std::string, std::optional<WeightFormat>> formats;
  for (int64_t l = 0; l < Stories().config.n_layers; ++l) {
    for (int k = 0; k < kLinearKinds; ++k) {
      formats.emplace(LinearWeightName(l, static_cast<LinearKind>(k)), ParseWeightFormat(format));
    }
  }
  return formats;
}

LayerwiseResult RunLayerwise(const std::string& format, bool awq, bool gptq, const char* criterion, double fraction) {
  LayerwiseOptions o;
  o.awq = awq;
  o.gptq = gptq;
  o.windows = Windows();
  o.progress = false;
  if (criterion != nullptr) {
    o.salient.fraction = fraction;
    o.salient.criterion = FindSalientCriterion(criterion);
  }
  return QuantizeLayerwise(Stories(), BlockFormats(format), o);
}

TEST(SalientLayerwise, EveryMethodAndCriterionKeepsThePlannedWeights) {
  const std::string format = "int3-g64";
  const WeightFormat f = *ParseWeightFormat(format);
  struct Method {
    const char* name;
    bool awq, gptq;
    std::vector<const char*> criteria;  // every criterion with rtn; one each with the slower methods
  };
  for (const Method& m : {Method{"rtn", false, false, {"magnitude", "activation", "impact"}},
                          Method{"gptq", false, true, {"impact"}}, Method{"awq", true, false, {"activation"}}}) {
    const LayerwiseResult plain = RunLayerwise(format, m.awq, m.gptq, nullptr, 0.0);
    for (const char* criterion : m.criteria) {
      SCOPED_TRACE(fmt::format("{} {}", m.name, criterion));
      const LayerwiseResult sal = RunLayerwise(format, m.awq, m.gptq, criterion, 0.01);
      double plain_err = 0.0, sal_err = 0.0;
      int64_t linears = 0;
      for (const auto& [name, p] : sal.tensors) {
        if (p.method.find("salient") == std::string::npos) continue;  // AWQ's re-stored norms
        ++linears;
        EXPECT_EQ(p.method, fmt::format("{}+salient-{}", m.name, criterion)) << name;
        const int64_t rows = p.salient.rows, cols = p.salient.cols;
        EXPECT_EQ(p.salient.nnz(), SalientCount(0.01, rows, cols, SalientScope::kTensor)) << name;
        ASSERT_EQ(p.salient_values.size(), static_cast<size_t>(p.salient.nnz()));
        const size_t row_bytes = *RowBytes(f.dtype, cols, f.group);
        std::vector<float> dense(static_cast<size_t>(cols));
        for (int64_t r = 0; r < rows; ++r) {
          DequantizeIntRow(f.dtype, p.bytes.data() + r * row_bytes, dense.data(), cols, f.group);
          for (uint32_t i = p.salient.row_ptr[r]; i < p.salient.row_ptr[r + 1]; ++i) {
            EXPECT_EQ(dense[p.salient.col[i]], 0.0f) << name << " [" << r << ", " << p.salient.col[i] << "]";
          }
        }
        plain_err += std::pow(plain.tensors.at(name).relative_rmse, 2.0);
        sal_err += std::pow(p.relative_rmse, 2.0);
      }
      EXPECT_EQ(linears, Stories().config.n_layers * kLinearKinds);
      std::printf("%-5s %-10s mean relative squared error of the linears: %.4g -> %.4g with 1%% salient\n", m.name,
                  criterion, plain_err / linears, sal_err / linears);
      // Keeping 1% in FP16 must lower the weights' error (magnitude the most: it targets the weight error).
      EXPECT_LT(sal_err, 0.9 * plain_err);
    }
  }
}

}  // namespace
}  // namespace mixq
