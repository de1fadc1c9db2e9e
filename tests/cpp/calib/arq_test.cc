#include "amct/calib/arq.h"

#include <gtest/gtest.h>

#include <vector>

#include "amct/error.h"

namespace amct {
namespace {

std::vector<float> amct_test_rows() {
  std::vector<float> w;
  for (int i = 0; i < 12; ++i) w.push_back(-1.0f);
  for (int i = 0; i < 12; ++i) w.push_back(0.0f);
  for (int i = 0; i < 12; ++i) w.push_back(1.0f);
  for (int i = 0; i < 4; ++i)
    for (const float v : {-1.0f, 0.0f, 1.0f}) w.push_back(v);
  return w;
}

TEST(Arq, PerChannelScalesMatchAmctTest) {
  const WeightScales s = arq_quantize(amct_test_rows(), 4, true, 8);
  ASSERT_EQ(s.scale.size(), 4u);
  const float expected[] = {0.007844f, 1.0f, 0.007844f, 0.007844f};
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(s.scale[i], expected[i], 1e-4);
    EXPECT_EQ(s.offset[i], 0);
  }
  // |max| == |min| is not "negative side dominates": divisor 127.
  EXPECT_EQ(s.scale[0], 1.0f / 127.0f);
  EXPECT_EQ(s.scale[2], 1.0f / 127.0f);
  EXPECT_EQ(s.scale[3], 1.0f / 127.0f);
}

TEST(Arq, DivisorIs128WhenNegativeDominates) {
  const std::vector<float> w = {-2.0f, 1.0f, 0.5f, 2.0f, -1.0f, 0.0f};
  const WeightScales s = arq_quantize(w, 2, true, 8);
  EXPECT_EQ(s.scale[0], 2.0f / 128.0f);
  EXPECT_EQ(s.scale[1], 2.0f / 127.0f);
  const WeightScales t = arq_quantize(w, 2, false, 8);
  ASSERT_EQ(t.scale.size(), 1u);
  EXPECT_EQ(t.scale[0], 2.0f / 127.0f);
}

TEST(Arq, FakeQuantizeAndIntegers) {
  std::vector<float> w = {-2.0f, 1.0f, 0.5f, 0.3f, -0.2f, 0.1f};
  const std::vector<float> scales = {2.0f / 128.0f, 0.3f / 127.0f};
  const std::vector<int8_t> q = quantize_weight_int8(w, 2, scales, 8);
  EXPECT_EQ(q, (std::vector<int8_t>{-128, 64, 32, 127, -85, 42}));
  fake_quantize_weight(w, 2, scales, 8);
  EXPECT_EQ(w[0], -128.0f * scales[0]);
  EXPECT_EQ(w[2], 32.0f * scales[0]);
  EXPECT_EQ(w[4], -85.0f * scales[1]);
  // Already on the grid: the integers are reproduced.
  EXPECT_EQ(quantize_weight_int8(w, 2, scales, 8), q);
}

TEST(Arq, ClampsToIntegerRangeAndRoundsHalfEven) {
  const std::vector<float> w = {10.0f, -10.0f, 2.5f, 3.5f};
  const std::vector<float> scale = {1.0f};
  EXPECT_EQ(quantize_weight_int8(w, 1, scale, 4), (std::vector<int8_t>{7, -8, 2, 4}));
}

TEST(Arq, RejectsBadShapes) {
  const std::vector<float> w = {1.0f, 2.0f, 3.0f};
  EXPECT_THROW(arq_quantize(w, 2, true, 8), Error);
  EXPECT_THROW(arq_quantize(w, 0, true, 8), Error);
  const std::vector<float> scales = {1.0f, 1.0f};
  EXPECT_THROW(quantize_weight_int8(w, 3, scales, 8), Error);
  EXPECT_THROW(quantize_weight_int8(w, 1, std::vector<float>{1.0f}, 16), Error);
}

}  // namespace
}  // namespace amct
