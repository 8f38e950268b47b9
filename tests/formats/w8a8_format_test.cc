// W8A8 format names: w8a8 / w8a8-token parse to int8 symmetric rows with their activation mode, print back,
// are listed, are not llama.cpp types, and drop the activation mode for a lookup table.
#include <gtest/gtest.h>

#include "mixq/formats/weight_format.h"

namespace mixq {
namespace {

TEST(W8A8Format, ParsesAndPrintsBothNames) {
  const std::optional<WeightFormat> w8a8 = ParseWeightFormat("W8A8");
  ASSERT_TRUE(w8a8.has_value());
  EXPECT_EQ(w8a8->dtype, DType::kInt8Sym);
  EXPECT_EQ(w8a8->group, 0);
  EXPECT_TRUE(w8a8->per_tensor);
  EXPECT_EQ(w8a8->activation, ActivationQuant::kInt8Tensor);
  EXPECT_EQ(WeightFormatName(*w8a8), "w8a8");

  const std::optional<WeightFormat> token = ParseWeightFormat("w8a8-token");
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ(token->dtype, DType::kInt8Sym);
  EXPECT_EQ(token->group, 0);
  EXPECT_FALSE(token->per_tensor);
  EXPECT_EQ(token->activation, ActivationQuant::kInt8Token);
  EXPECT_EQ(WeightFormatName(*token), "w8a8-token");

  // Same weights, different activations: not equal to the weight-only formats.
  EXPECT_NE(*w8a8, *ParseWeightFormat("int8-pt-sym"));
  EXPECT_NE(*token, *ParseWeightFormat("int8-pc-sym"));
  EXPECT_FALSE(IsLlamaCppCompatible(*w8a8));
  EXPECT_NE(WeightFormatNames().find("w8a8-token"), std::string::npos);
  for (const char* bad : {"w8a8-", "w8a8-tensor", "w8a16", "w4a8"}) EXPECT_FALSE(ParseWeightFormat(bad)) << bad;
}

TEST(W8A8Format, ActivationModeNames) {
  EXPECT_EQ(ParseActivationQuantName("int8-tensor"), ActivationQuant::kInt8Tensor);
  EXPECT_EQ(ParseActivationQuantName("int8-token"), ActivationQuant::kInt8Token);
  EXPECT_FALSE(ParseActivationQuantName("format"));
  EXPECT_FALSE(ParseActivationQuantName("INT8-TOKEN"));
  EXPECT_STREQ(ActivationQuantName(ActivationQuant::kInt8Tensor), "int8-tensor");
  EXPECT_STREQ(ActivationQuantName(ActivationQuant::kInt8Token), "int8-token");
}

TEST(W8A8Format, WithoutActivationQuantKeepsInt8RowsPerChannel) {
  EXPECT_EQ(WithoutActivationQuant(*ParseWeightFormat("w8a8")), *ParseWeightFormat("int8-pc-sym"));
  EXPECT_EQ(WithoutActivationQuant(*ParseWeightFormat("w8a8-token")), *ParseWeightFormat("int8-pc-sym"));
  EXPECT_EQ(WithoutActivationQuant(*ParseWeightFormat("q4_k")), *ParseWeightFormat("q4_k"));
}

}  // namespace
}  // namespace mixq
