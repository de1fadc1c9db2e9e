#include "amct/weight_quant.h"

#include <gtest/gtest.h>

#include <limits>
#include <numeric>
#include <vector>

#include "amct/error.h"

namespace amct {
namespace {

std::vector<int64_t> channels_of(const ChannelMap& map) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < map.numel(); ++i) out.push_back(map.channel_of(i));
  return out;
}

// The plain reference of the ConvTranspose map: regroup [Cin, Cout/g, k] to
// [g, Cin/g, Cout/g, k], swap the middle axes, and read the leading channel.
std::vector<int64_t> regrouped_deconv_channels(int64_t cin, int64_t cout_per_group, int64_t k, int64_t groups) {
  std::vector<int64_t> out(static_cast<size_t>(cin * cout_per_group * k));
  const int64_t cin_per_group = cin / groups;
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t i = 0; i < cin_per_group; ++i)
      for (int64_t o = 0; o < cout_per_group; ++o)
        for (int64_t x = 0; x < k; ++x)
          out[static_cast<size_t>((((g * cin_per_group + i) * cout_per_group) + o) * k + x)] = g * cout_per_group + o;
  return out;
}

TEST(ChannelMap, ConvIsOutputChannelFirst) {
  const ChannelMap map = ChannelMap::for_weight(WeightLayout::kOutFirst, {3, 2, 2}, 1);
  EXPECT_EQ(map.channels(), 3);
  EXPECT_EQ(map.input_channels(), 2);
  EXPECT_EQ(map.axis(), 0);
  EXPECT_EQ(channels_of(map), (std::vector<int64_t>{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2}));
}

TEST(ChannelMap, GroupedDeconvMatchesTheRegroupingReference) {
  for (const int64_t groups : {1, 2, 3}) {
    const int64_t cin = 6, cout_per_group = 2, k = 4;
    const ChannelMap map = ChannelMap::for_weight(WeightLayout::kDeconv, {cin, cout_per_group, 2, 2}, groups);
    EXPECT_EQ(map.channels(), cout_per_group * groups);
    EXPECT_EQ(map.input_channels(), cin);
    EXPECT_EQ(map.axis(), groups == 1 ? 1 : -1);
    EXPECT_EQ(channels_of(map), regrouped_deconv_channels(cin, cout_per_group, k, groups)) << "groups " << groups;
  }
}

TEST(ChannelMap, GemmAndMatMulLayouts) {
  const ChannelMap trans_b = ChannelMap::for_weight(WeightLayout::kGemm, {3, 2}, 1, true);  // [Cout, Cin]
  EXPECT_EQ(channels_of(trans_b), (std::vector<int64_t>{0, 0, 1, 1, 2, 2}));
  EXPECT_EQ(trans_b.input_channels(), 2);
  const ChannelMap in_out = ChannelMap::for_weight(WeightLayout::kInOut, {2, 3});  // [Cin, Cout]
  EXPECT_EQ(channels_of(in_out), (std::vector<int64_t>{0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(in_out.axis(), 1);
  EXPECT_EQ(in_out.input_channels(), 2);
  const ChannelMap gates = ChannelMap::for_weight(WeightLayout::kGates, {1, 4, 2});  // [dirs, G*H, in]
  EXPECT_EQ(channels_of(gates), (std::vector<int64_t>{0, 0, 1, 1, 2, 2, 3, 3}));
}

TEST(ChannelMap, RejectsShapesThatDoNotFit) {
  EXPECT_THROW(ChannelMap::for_weight(WeightLayout::kDeconv, {5, 2, 3}, 2), Error);
  EXPECT_THROW(ChannelMap::for_weight(WeightLayout::kOutFirst, {4}, 1), Error);
  EXPECT_THROW(ChannelMap::for_weight(WeightLayout::kOutFirst, {4, 0, 3}, 1), Error);
  EXPECT_THROW(ChannelMap::for_weight(WeightLayout::kOutFirst, {4, 2, 3}, 0), Error);
  EXPECT_THROW(ChannelMap::rows(3, 4), Error);
}

TEST(WeightQuant, IntegersRoundHalfEvenAndClampToTheFormat) {
  const std::vector<float> w = {10.0f, -10.0f, 2.5f, 3.5f};
  const std::vector<float> scale = {1.0f};
  const ChannelMap map = ChannelMap::rows(1, 4);
  EXPECT_EQ(integerize_weight(w, map, scale, QuantFormat::signed_bits(4), "l", "w"),
            (std::vector<int32_t>{7, -8, 2, 4}));
  EXPECT_EQ(integerize_weight(w, map, scale, QuantFormat::signed_bits(8), "l", "w"),
            (std::vector<int32_t>{10, -10, 2, 4}));
}

TEST(WeightQuant, ArqQuantizerIntegersReproduceFromTheFakeQuantizedWeight) {
  const std::vector<float> w = {-2.0f, 1.0f, 0.5f, 0.3f, -0.2f, 0.1f};
  const ChannelMap map = ChannelMap::rows(2, 6);
  const auto quantizer = make_weight_quantizer(WeightQuantParams{}, "layer");
  const QuantizedWeight q = quantizer->quantize(w, map, true, QuantFormat::signed_bits(8));
  EXPECT_EQ(q.scale, (std::vector<float>{2.0f / 128.0f, 0.3f / 127.0f}));
  EXPECT_EQ(q.integers, (std::vector<int32_t>{-128, 64, 32, 127, -85, 42}));
  // The modified ONNX holds integers * scale; the writers recover the integers.
  const std::vector<float> fake = dequantize_weight(q.integers, map, q.scale);
  EXPECT_EQ(fake[0], -128.0f * q.scale[0]);
  EXPECT_EQ(integerize_weight(fake, map, q.scale, QuantFormat::signed_bits(8), "layer", "w"), q.integers);
}

TEST(WeightQuant, ErrorsNameTheLayerAndTensor) {
  const std::vector<float> w = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  try {
    integerize_weight(w, ChannelMap::rows(1, 2), std::vector<float>{1.0f}, QuantFormat::signed_bits(8), "fc", "fc.w");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 'fc': weight 'fc.w' contains inf or NaN at element 1"),
              std::string::npos);
  }
  EXPECT_THROW(integerize_weight(std::vector<float>{1.0f, 2.0f}, ChannelMap::rows(2, 2), std::vector<float>{1, 1, 1},
                                 QuantFormat::signed_bits(8), "fc", "w"),
               Error);
}

TEST(WeightQuant, BiasInAccumulatorScaleWithOverflowCheck) {
  const std::vector<float> deq = dequant_scales(std::vector<float>{0.5f, 0.25f}, 0.1f);
  EXPECT_EQ(deq[0], static_cast<float>(0.5 * static_cast<double>(0.1f)));
  const std::vector<float> bias = {1.0f, -0.0375f};
  const std::vector<int32_t> q = integerize_bias(bias, deq, "conv");
  EXPECT_EQ(q[0], 20);
  EXPECT_EQ(q[1], -2);  // -1.5 rounds half to even
  const std::vector<float> huge = {1e10f};
  EXPECT_THROW(integerize_bias(huge, std::vector<float>{1e-3f}, "conv"), Error);
  EXPECT_THROW(integerize_bias(bias, std::vector<float>{1, 1, 1}, "conv"), Error);
}

// Weights with ties (x.5 steps), values past the clamp and both signs.
std::vector<float> tricky_weight(size_t n) {
  std::vector<float> w(n);
  for (size_t i = 0; i < n; ++i) w[i] = (static_cast<float>(i % 23) - 11.0f) * 0.25f * (i % 2 ? 1.0f : -3.0f);
  return w;
}

TEST(WeightQuant, ByteIntegersAreTheInt32IntegersNarrowed) {
  const std::vector<float> w = tricky_weight(24);
  const ChannelMap map = ChannelMap::rows(3, 24);
  const std::vector<float> scale = {0.5f, 0.25f, 0.125f};
  for (const int bits : {4, 8})
    for (const int32_t shift : {0, 128}) {
      const QuantFormat format = QuantFormat::signed_bits(bits);
      const std::vector<int32_t> reference = integerize_weight(w, map, scale, format, "l", "w");
      const std::string bytes = integerize_weight_bytes(w, map, scale, format, "l", "w", shift);
      ASSERT_EQ(bytes.size(), reference.size());
      for (size_t i = 0; i < bytes.size(); ++i)
        EXPECT_EQ(static_cast<uint8_t>(bytes[i]), static_cast<uint8_t>(reference[i] + shift)) << i;
    }
}

TEST(WeightQuant, InPlaceFakeQuantEqualsIntegersDequantized) {
  const std::vector<float> w = tricky_weight(30);
  const ChannelMap map = ChannelMap::rows(5, 30);
  const std::vector<float> scale = {0.5f, 0.3f, 0.125f, 1.7f, 0.01f};
  const QuantFormat format = QuantFormat::signed_bits(8);
  std::vector<float> in_place = w;
  fake_quantize_weight(in_place, map, scale, format, "l", "w");
  EXPECT_EQ(in_place, dequantize_weight(integerize_weight(w, map, scale, format, "l", "w"), map, scale));
  std::vector<float> bad = {1.0f, std::numeric_limits<float>::infinity()};
  EXPECT_THROW(fake_quantize_weight(bad, ChannelMap::rows(1, 2), std::vector<float>{1.0f}, format, "l", "w"), Error);
}

TEST(WeightQuant, ArqInPlaceGivesTheFactorsAndWeightsOfItsQuantize) {
  const std::vector<float> w = tricky_weight(40);
  const ChannelMap map = ChannelMap::rows(4, 40);
  WeightQuantParams params;
  params.wts_algo = "arq_quantize";
  const auto quantizer = make_weight_quantizer(params, "fc");
  for (const bool channel_wise : {false, true})
    for (const int bits : {4, 8}) {
      const QuantFormat format = QuantFormat::signed_bits(bits);
      const QuantizedWeight reference = quantizer->quantize(w, map, channel_wise, format);
      std::vector<float> in_place = w;
      const QuantizedWeight got = quantizer->fake_quantize_in_place(in_place, map, channel_wise, format);
      EXPECT_EQ(got.scale, reference.scale);
      EXPECT_EQ(got.offset, reference.offset);
      EXPECT_TRUE(got.integers.empty());
      EXPECT_EQ(in_place, dequantize_weight(reference.integers, map, reference.scale));
    }
}

TEST(QuantFormat, RangesNamesAndStorage) {
  const QuantFormat int8 = QuantFormat::signed_bits(8);
  EXPECT_EQ(int8.min(), -128);
  EXPECT_EQ(int8.max(), 127);
  EXPECT_EQ(int8.name(), "INT8");
  EXPECT_EQ(int8.unsigned_shift(), 128);
  EXPECT_EQ(QuantFormat::signed_bits(16).unsigned_shift(), 32768);
  EXPECT_EQ(QuantFormat::signed_bits(4).min(), -8);
  EXPECT_EQ(QuantFormat::parse("INT16", {4, 8, 16})->bits(), 16);
  EXPECT_FALSE(QuantFormat::parse("INT16", {4, 8}).has_value());
  EXPECT_FALSE(QuantFormat::parse("int8", {8}).has_value());
  EXPECT_THROW(QuantFormat::signed_bits(1), Error);
  EXPECT_EQ(format_names({4, 8}), "\"INT4\", \"INT8\"");
}

}  // namespace
}  // namespace amct
