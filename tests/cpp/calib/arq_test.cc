#include "amct/calib/arq.h"

#include <gtest/gtest.h>

#include <vector>

#include "amct/error.h"
#include "amct/layer_kind.h"

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

TEST(Arq, RejectsBadShapes) {
  const std::vector<float> w = {1.0f, 2.0f, 3.0f};
  EXPECT_THROW(arq_quantize(w, 2, true, 8), Error);
  EXPECT_THROW(arq_quantize(w, 0, true, 8), Error);
  EXPECT_THROW(arq_quantize(std::vector<float>{}, 1, true, 8), Error);
}

TEST(Arq, ScalesFollowTheChannelMap) {
  // A ConvTranspose weight [Cin=2, Cout=2, 1]: channel c is column c.
  const std::vector<float> w = {-4.0f, 1.0f, 2.0f, -0.5f};
  const WeightScales s = arq_quantize(w, ChannelMap::for_weight(WeightLayout::kDeconv, {2, 2, 1}), true, 8);
  ASSERT_EQ(s.scale.size(), 2u);
  EXPECT_EQ(s.scale[0], 4.0f / 128.0f);
  EXPECT_EQ(s.scale[1], 1.0f / 127.0f);
}

}  // namespace
}  // namespace amct
