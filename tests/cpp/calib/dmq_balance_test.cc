#include "amct/calib/dmq_balance.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "amct/error.h"

namespace amct {
namespace {

TEST(DmqBalance, FactorsFollowTheFormula) {
  // s = a^0.5 / w^0.5: a = 4, w = 1 -> 2; a = 1, w = 4 -> 0.5; a = 9, w = 0.25 -> 6.
  const std::vector<float> s = balance_factors(std::vector<float>{4.0f, 1.0f, 9.0f},
                                               std::vector<float>{1.0f, 4.0f, 0.25f}, 0.5f);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_FLOAT_EQ(s[0], 2.0f);
  EXPECT_FLOAT_EQ(s[1], 0.5f);
  EXPECT_FLOAT_EQ(s[2], 6.0f);
  // alpha 0.8: s = a^0.8 / w^0.2, 32^0.8 = 16, 32^0.2 = 2.
  const std::vector<float> t = balance_factors(std::vector<float>{32.0f}, std::vector<float>{32.0f}, 0.8f);
  EXPECT_NEAR(t[0], 8.0f, 1e-5f);
}

TEST(DmqBalance, DegenerateChannelsFollowTheEpsRules) {
  // Channels: 0 normal (a=4, w=1 -> s=2, w*s=2, a/s=2); 1 normal (a=1, w=4 -> 0.5, w*s=2, a/s=2);
  // 2 zero input, weight 8 -> max(w*s)/w = 2/8; 3 input 6, zero weight -> a/max(a/s) = 6/2;
  // 4 zero input and zero weight -> 1.
  const std::vector<float> a = {4.0f, 1.0f, 0.0f, 6.0f, 0.0f};
  const std::vector<float> w = {1.0f, 4.0f, 8.0f, 0.0f, 0.0f};
  const std::vector<float> s = balance_factors(a, w, 0.5f);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_FLOAT_EQ(s[0], 2.0f);
  EXPECT_FLOAT_EQ(s[1], 0.5f);
  EXPECT_FLOAT_EQ(s[2], 0.25f);
  EXPECT_FLOAT_EQ(s[3], 3.0f);
  EXPECT_EQ(s[4], 1.0f);
}

TEST(DmqBalance, BelowEpsCountsAsZero) {
  // An input maximum just under FLT_EPSILON is "no activation"; one at it is not.
  const float under = std::nextafter(FLT_EPSILON, 0.0f);
  const std::vector<float> s = balance_factors(std::vector<float>{4.0f, under, FLT_EPSILON},
                                               std::vector<float>{1.0f, 2.0f, 1.0f}, 0.5f);
  EXPECT_FLOAT_EQ(s[1], 2.0f / 2.0f);                 // max(w*s) = 2 over w = 2
  EXPECT_FLOAT_EQ(s[2], std::sqrt(FLT_EPSILON));      // formula
}

TEST(DmqBalance, AllZeroInputOrWeightGivesOnes) {
  EXPECT_EQ(balance_factors(std::vector<float>{0.0f, 0.0f}, std::vector<float>{1.0f, 2.0f}, 0.5f),
            (std::vector<float>{1.0f, 1.0f}));
  EXPECT_EQ(balance_factors(std::vector<float>{1.0f, 2.0f}, std::vector<float>{0.0f, 0.0f}, 0.5f),
            (std::vector<float>{1.0f, 1.0f}));
}

TEST(DmqBalance, RangeCheckNamesLayerAndChannel) {
  check_balance_factors(std::vector<float>{1.0f, 2.0f * FLT_EPSILON, 0.5f / FLT_EPSILON}, "fc");
  try {
    check_balance_factors(std::vector<float>{1.0f, FLT_EPSILON}, "fc");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kRuntime);
    EXPECT_EQ(std::string(e.what()),
              "layer 'fc': The tensor balance factor is less than FLT_EPSILON or larger than 1/FLT_EPSILON! "
              "(input channel 1: 1.1920929e-07)");
  }
  EXPECT_THROW(check_balance_factors(std::vector<float>{1.0f / FLT_EPSILON}, "fc"), Error);
  EXPECT_THROW(check_balance_factors(std::vector<float>{std::numeric_limits<float>::quiet_NaN()}, "fc"), Error);
}

TEST(DmqBalance, InputChannelsOfEachLayout) {
  // Conv [Cout=4, Cin/g=2, 1, 3] with group 2: output channels 0-1 read inputs 0-1, 2-3 read 2-3.
  const InputChannelMap conv = InputChannelMap::for_weight(WeightLayout::kOutFirst, {4, 2, 1, 3}, 2);
  EXPECT_EQ(conv.channels(), 4);
  EXPECT_EQ(conv.channel_of(0), 0);
  EXPECT_EQ(conv.channel_of(3), 1);
  EXPECT_EQ(conv.channel_of(6), 0);       // out 1, local 0
  EXPECT_EQ(conv.channel_of(12), 2);      // out 2, local 0 -> group 1
  EXPECT_EQ(conv.channel_of(23), 3);      // last element
  // Ungrouped conv: the local channel is the global one.
  const InputChannelMap plain = InputChannelMap::for_weight(WeightLayout::kOutFirst, {3, 5, 2, 2});
  EXPECT_EQ(plain.channel_of(4 * 5 + 4 * 3), 3);
  // ConvTranspose [Cin=6, Cout/g, k...]: input channel is the leading axis.
  const InputChannelMap deconv = InputChannelMap::for_weight(WeightLayout::kDeconv, {6, 2, 2, 2}, 3);
  EXPECT_EQ(deconv.channels(), 6);
  EXPECT_EQ(deconv.channel_of(8 * 5 + 7), 5);
  // Gemm transB=1 [Cout, Cin] trailing; transB=0 and MatMul [Cin, Cout] leading.
  const InputChannelMap gemm = InputChannelMap::for_weight(WeightLayout::kGemm, {3, 4}, 1, true);
  EXPECT_EQ(gemm.channels(), 4);
  EXPECT_EQ(gemm.channel_of(9), 1);
  const InputChannelMap matmul = InputChannelMap::for_weight(WeightLayout::kInOut, {4, 3});
  EXPECT_EQ(matmul.channels(), 4);
  EXPECT_EQ(matmul.channel_of(9), 3);
  EXPECT_THROW(InputChannelMap::for_weight(WeightLayout::kNone, {}), Error);
  EXPECT_THROW(InputChannelMap::for_weight(WeightLayout::kOutFirst, {3, 2, 1, 1}, 2), Error);
}

TEST(DmqBalance, WeightMaximaAndScalingUseInputChannels) {
  // Linear weight [Cout=2, Cin=3] (Gemm transB=1).
  const InputChannelMap map = InputChannelMap::for_weight(WeightLayout::kGemm, {2, 3}, 1, true);
  std::vector<float> w = {1.0f, -5.0f, 0.5f, -2.0f, 3.0f, 0.25f};
  EXPECT_EQ(weight_channel_abs_max(w, map), (std::vector<float>{2.0f, 5.0f, 0.5f}));
  scale_weight_input_channels(w, map, std::vector<float>{2.0f, 0.5f, 4.0f});
  EXPECT_EQ(w, (std::vector<float>{2.0f, -2.5f, 2.0f, -4.0f, 1.5f, 1.0f}));
  EXPECT_THROW(scale_weight_input_channels(w, map, std::vector<float>{1.0f}), Error);
}

TEST(DmqBalance, InputDivisionUsesTheChannelAxis) {
  // [outer 2, channels 2, inner 3]: the factor follows the middle axis.
  std::vector<float> x = {2, 4, 6, 3, 6, 9, -2, -4, -6, 1.5f, 3, 4.5f};
  divide_input_channels(x, 2, 3, std::vector<float>{2.0f, 3.0f});
  EXPECT_EQ(x, (std::vector<float>{1, 2, 3, 1, 2, 3, -1, -2, -3, 0.5f, 1, 1.5f}));
  // Channels last (Linear): each row is divided channel by channel.
  std::vector<float> rows = {1, 8, 2, 4};
  divide_input_channels(rows, 2, 1, std::vector<float>{0.5f, 4.0f});
  EXPECT_EQ(rows, (std::vector<float>{2, 2, 4, 1}));
  EXPECT_THROW(divide_input_channels(rows, 3, 1, std::vector<float>{1.0f, 1.0f, 1.0f}), Error);
  EXPECT_THROW(divide_input_channels(rows, 2, 1, std::vector<float>{1.0f}), Error);
}

TEST(DmqBalance, ChannelMaximaMatchTheReference) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  // [outer, channels, inner] shapes: channels last (inner 1), conv-like, one channel.
  const int64_t shapes[][3] = {{5, 7, 1}, {3, 4, 9}, {2, 1, 17}, {1, 16, 33}};
  for (const auto& shape : shapes) {
    std::vector<float> x(static_cast<size_t>(shape[0] * shape[1] * shape[2]));
    for (float& v : x) v = normal(rng);
    std::vector<float> fast(static_cast<size_t>(shape[1]), 0.5f);
    std::vector<float> reference = fast;
    EXPECT_TRUE(accumulate_channel_abs_max(x, shape[1], shape[2], fast));
    EXPECT_TRUE(accumulate_channel_abs_max_reference(x, shape[1], shape[2], reference));
    EXPECT_EQ(fast, reference);
    // Non-finite values are reported by both.
    x[x.size() / 2] = std::numeric_limits<float>::infinity();
    EXPECT_FALSE(accumulate_channel_abs_max(x, shape[1], shape[2], fast));
    EXPECT_FALSE(accumulate_channel_abs_max_reference(x, shape[1], shape[2], reference));
    x[x.size() / 2] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_FALSE(accumulate_channel_abs_max(x, shape[1], shape[2], fast));
  }
  std::vector<float> maxima(3);
  EXPECT_THROW(accumulate_channel_abs_max(std::vector<float>(10), 3, 1, maxima), Error);
}

}  // namespace
}  // namespace amct
