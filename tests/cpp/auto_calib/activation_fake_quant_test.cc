// The input fake quantization of the torch fake-quant model, and its factors from a record.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "amct/error.h"
#include "amct/fake_quant.h"

namespace amct {
namespace {

TEST(FakeQuantizeActivation, RoundsHalfToEvenAndClips) {
  const std::vector<float> input = {0.24f, 0.25f, 0.75f, 100.0f, -100.0f, -0.75f};
  std::vector<float> output(input.size());
  fake_quantize_activation(input, output, {0.5f, 3, QuantFormat::signed_bits(8)});
  // x * 2 = 0.48, 0.5, 1.5, 200, -200, -1.5 -> 0, 0, 2, 200, -200, -2; + 3 and clip to [-128, 127].
  EXPECT_EQ(output, (std::vector<float>{0.0f, 0.0f, 1.0f, 62.0f, -65.5f, -1.0f}));
}

TEST(FakeQuantizeActivation, MultipliesByTheStoredInverseScale) {
  // The inverse scale is computed in double and stored as float32, as the fake-quant ONNX model's Mul holds it.
  const std::vector<float> input = {0.15f, 0.45f};
  std::vector<float> output(2);
  fake_quantize_activation(input, output, {0.3f, 0, QuantFormat::signed_bits(8)});
  const float inverse = static_cast<float>(1.0 / static_cast<double>(0.3f));
  EXPECT_EQ(output[0], std::nearbyint(0.15f * inverse) * 0.3f);
  EXPECT_EQ(output[1], std::nearbyint(0.45f * inverse) * 0.3f);
  std::vector<float> short_output(1);
  EXPECT_THROW(fake_quantize_activation(input, short_output, {0.3f, 0, QuantFormat::signed_bits(8)}), Error);
}

TEST(LayerFakeQuant, InputFactorsAndBiasOnTheInt32Grid) {
  ScaleOffsetRecord record;
  auto* entry = record.add_record();
  entry->set_key("conv");
  entry->mutable_value()->set_scale_d(0.5f);
  entry->mutable_value()->set_offset_d(-4);
  entry->mutable_value()->set_act_type("INT16");
  entry->mutable_value()->add_scale_w(0.1f);
  entry->mutable_value()->add_scale_w(0.2f);
  const std::vector<float> bias = {0.26f, -0.3f};
  const LayerFakeQuant quant = layer_fake_quant(record, "conv", bias);
  EXPECT_EQ(quant.input.scale, 0.5f);
  EXPECT_EQ(quant.input.offset, -4);
  EXPECT_EQ(quant.input.format.bits(), 16);
  const float deq0 = static_cast<float>(static_cast<double>(0.1f) * 0.5);
  const float deq1 = static_cast<float>(static_cast<double>(0.2f) * 0.5);
  EXPECT_EQ(quant.bias, (std::vector<float>{5.0f * deq0, -3.0f * deq1}));
  EXPECT_TRUE(layer_fake_quant(record, "conv", {}).bias.empty());
}

TEST(LayerFakeQuant, AnUncalibratedLayerIsAnError) {
  ScaleOffsetRecord record;
  record.add_record()->set_key("conv");
  try {
    layer_fake_quant(record, "conv", {});
    FAIL() << "no error";
  } catch (const Error& error) {
    EXPECT_STREQ(error.what(),
                 "cannot find scale_d of layer conv in record_file, please check data calibration process!");
  }
}

}  // namespace
}  // namespace amct
