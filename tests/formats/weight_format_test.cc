// Weight format names: every spelling the CLI accepts, the canonical names, and what a format can hold.
#include "mixq/formats/weight_format.h"

#include <gtest/gtest.h>

namespace mixq {
namespace {

TEST(WeightFormatTest, GgmlNamesInAnyCase) {
  EXPECT_EQ(ParseWeightFormat("q4_k"), (WeightFormat{DType::kQ4_K, 0, false}));
  EXPECT_EQ(ParseWeightFormat("Q8_0"), (WeightFormat{DType::kQ8_0, 0, false}));
  EXPECT_EQ(ParseWeightFormat("iq4_xs"), (WeightFormat{DType::kIQ4_XS, 0, false}));
  EXPECT_EQ(ParseWeightFormat("f16"), (WeightFormat{DType::kF16, 0, false}));
  EXPECT_FALSE(ParseWeightFormat("q8_1").has_value());  // an activation type, not a weight format
  EXPECT_FALSE(ParseWeightFormat("iq2_xxs").has_value());
}

TEST(WeightFormatTest, IntFormats) {
  EXPECT_EQ(ParseWeightFormat("int4-g128"), (WeightFormat{DType::kInt4, 128, false}));
  EXPECT_EQ(ParseWeightFormat("INT3-G64-SYM"), (WeightFormat{DType::kInt3Sym, 64, false}));
  EXPECT_EQ(ParseWeightFormat("int8-pc"), (WeightFormat{DType::kInt8, 0, false}));
  EXPECT_EQ(ParseWeightFormat("int2-pt-sym"), (WeightFormat{DType::kInt2Sym, 0, true}));
  for (const char* bad : {"int1-g32", "int9-pc", "int4", "int4-", "int4-g0", "int4-g-3", "int4-gx", "int4-g32-asym",
                          "int4-pcs", "int4-g99999999999"}) {
    EXPECT_FALSE(ParseWeightFormat(bad).has_value()) << bad;
  }
}

TEST(WeightFormatTest, NamesRoundTrip) {
  for (const char* name : {"q4_k", "q8_0", "bf16", "int4-g128", "int3-g64-sym", "int8-pc", "int4-pt", "int2-pt-sym"}) {
    const auto f = ParseWeightFormat(name);
    ASSERT_TRUE(f.has_value()) << name;
    EXPECT_EQ(WeightFormatName(*f), name);
  }
}

TEST(WeightFormatTest, WhatEachFormatCanHold) {
  EXPECT_EQ(WhyCannotStore(WeightFormat{DType::kQ4_K}, 4096), "");
  EXPECT_NE(WhyCannotStore(WeightFormat{DType::kQ4_K}, 172), "");
  EXPECT_NE(WhyCannotStore(WeightFormat{DType::kQ4_0}, 172).find("172"), std::string::npos);
  EXPECT_EQ(WhyCannotStore(WeightFormat{DType::kInt4, 128}, 172), "");  // a short last group is fine
  EXPECT_EQ(WhyCannotStore(WeightFormat{DType::kInt3Sym, 0}, 1), "");
  EXPECT_TRUE(IsLlamaCppCompatible(WeightFormat{DType::kQ4_K}));
  EXPECT_FALSE(IsLlamaCppCompatible(WeightFormat{DType::kInt4, 128}));
}

}  // namespace
}  // namespace mixq
