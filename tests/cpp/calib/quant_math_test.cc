#include "amct/calib/quant_math.h"

#include <gtest/gtest.h>

#include <cmath>

#include "amct/error.h"

namespace amct {
namespace {

TEST(QuantMath, AsymmetricMatchesAmctTestExpectations) {
  // Rows [-1]*12, [0]*12, [1]*12, [-1,0,1]*4 of docs/amct-reference.md#arq with offset.
  const ScaleOffset neg = calculate_scale_offset(-1.0f, -1.0f, true, 8);
  EXPECT_FLOAT_EQ(neg.scale, 1.0f / 255.0f);
  EXPECT_EQ(neg.offset, 127);
  const ScaleOffset zero = calculate_scale_offset(0.0f, 0.0f, true, 8);
  EXPECT_EQ(zero.scale, 1.0f);
  EXPECT_EQ(zero.offset, -128);
  const ScaleOffset pos = calculate_scale_offset(1.0f, 1.0f, true, 8);
  EXPECT_FLOAT_EQ(pos.scale, 1.0f / 255.0f);
  EXPECT_EQ(pos.offset, -128);
  // -128 + 1/float32(2/255) is just below -0.5 in float32, so it rounds to -1.
  const ScaleOffset both = calculate_scale_offset(1.0f, -1.0f, true, 8);
  EXPECT_FLOAT_EQ(both.scale, 2.0f / 255.0f);
  EXPECT_EQ(both.offset, -1);
}

TEST(QuantMath, SymmetricDivisorDependsOnDominantSide) {
  EXPECT_EQ(calculate_scale_offset(1.0f, -2.0f, false, 8).scale, 2.0f / 128.0f);
  EXPECT_EQ(calculate_scale_offset(2.0f, -1.0f, false, 8).scale, 2.0f / 127.0f);
  EXPECT_EQ(calculate_scale_offset(1.0f, -1.0f, false, 8).scale, 1.0f / 127.0f);
  EXPECT_EQ(calculate_scale_offset(0.0f, 0.0f, false, 8).scale, 1.0f);
  EXPECT_EQ(calculate_scale_offset(1.0f, -2.0f, false, 8).offset, 0);
}

TEST(QuantMath, OtherBitWidths) {
  const ScaleOffset int16 = calculate_scale_offset(3.0f, -1.0f, true, 16);
  EXPECT_FLOAT_EQ(int16.scale, 4.0f / 65535.0f);
  EXPECT_EQ(int16.offset, static_cast<int32_t>(std::nearbyint(-32768.0f + 1.0f / int16.scale)));
  EXPECT_EQ(calculate_scale_offset(0.0f, 0.0f, true, 4).offset, -8);
  EXPECT_EQ(calculate_scale_offset(1.0f, -8.0f, false, 4).scale, 1.0f);
  EXPECT_EQ(calculate_scale_offset(7.0f, -1.0f, false, 4).scale, 1.0f);
}

TEST(QuantMath, TinyScaleBecomesOne) {
  const ScaleOffset so = calculate_scale_offset(1e-6f, 0.0f, true, 8);
  EXPECT_EQ(so.scale, 1.0f);
  EXPECT_EQ(so.offset, -128);
  EXPECT_EQ(process_scale(0.5f * kFltEpsilon), 1.0f);
  EXPECT_EQ(process_scale(0.25f), 0.25f);
}

TEST(QuantMath, InfiniteScaleIsRuntimeError) {
  try {
    calculate_scale_offset(3e38f, -3e38f, true, 8);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kRuntime);
    EXPECT_STREQ(e.what(), "Param scale has invalid value inf, nan or zeros!");
  }
  EXPECT_THROW(process_scale(NAN), Error);
}

TEST(QuantMath, RejectsUnsupportedBitWidths) {
  EXPECT_THROW(calculate_scale_offset(1.0f, 0.0f, true, 1), Error);
  EXPECT_THROW(calculate_scale_offset(1.0f, 0.0f, true, 17), Error);
}

TEST(QuantMath, RoundsHalfToEven) {
  EXPECT_EQ(round_half_even(2.5f), 2.0f);
  EXPECT_EQ(round_half_even(3.5f), 4.0f);
  EXPECT_EQ(round_half_even(-2.5f), -2.0f);
}

}  // namespace
}  // namespace amct
