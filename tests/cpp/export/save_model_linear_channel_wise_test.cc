// save_model on Linear layers quantized per output channel (linear_channel_wise,
// beyond AMCT): a record with one scale_w per output channel of a Gemm (either
// weight layout) or a MatMul ([in, out] weight) reaches every output model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "amct/error.h"
#include "save_test_support.h"

namespace amct::test {
namespace {

const std::vector<float> kScaleW = {0.01f, 0.02f, 0.04f};
constexpr float kScaleD = 0.05f;

// Weight integers in torch's [out=3, in=4] layout; entry (n, k).
int weight_int(int n, int k) { return (n * 4 + k) * 17 % 255 - 127; }

std::string per_channel_record() {
  std::string fields = "    scale_d: 0.05\n    offset_d: 2\n";
  for (float s : kScaleW) fields += "    scale_w: " + std::to_string(s) + "\n";
  for (size_t c = 0; c < kScaleW.size(); ++c) fields += "    offset_w: 0\n";
  return record_entry("fc", fields);
}

float deq(int n) { return static_cast<float>(static_cast<double>(kScaleW[n]) * static_cast<double>(kScaleD)); }

uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

// The per-channel parts every output model shares, for a layer whose deploy
// weight is [K=4, N=3] (Gemm after GemmTransB, MatMul); `qdq_axis` is N's axis
// in the QDQ model, which keeps the exporter's layout.
void expect_per_channel_outputs(const Saved& saved, int qdq_axis) {
  const auto& w = initializer_named(saved.deploy, "fc.weight");
  EXPECT_EQ(dims_of(w), (std::vector<int64_t>{4, 3}));
  std::vector<int> expected;
  for (int k = 0; k < 4; ++k)
    for (int n = 0; n < 3; ++n) expected.push_back(weight_int(n, k));
  EXPECT_EQ(int8_values(w), expected);

  const auto& param = initializer_named(saved.deploy, "fc.dequant.param");
  EXPECT_EQ(dims_of(param), (std::vector<int64_t>{3}));
  ASSERT_EQ(param.uint64_data_size(), 3);
  for (int n = 0; n < 3; ++n) EXPECT_EQ(param.uint64_data(n), uint64_t{bits_of(deq(n))}) << n;

  const auto& dqscale = constant_value(saved.fake_quant, "fc.fakedequant.dqscale");
  EXPECT_EQ(dims_of(dqscale), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(tensor_to_floats(dqscale), (std::vector<float>{deq(0), deq(1), deq(2)}));

  // QDQ: the INT8 weight is read through a per-axis DequantizeLinear on N.
  const auto& dq = node_named(saved.qdq, "fc.weight_dequant");
  EXPECT_EQ(get_int_attribute(dq, "axis", -1), qdq_axis);
  EXPECT_EQ(tensor_to_floats(initializer_named(saved.qdq, "fc.weight_dequant.scale")), kScaleW);
  EXPECT_EQ(dims_of(initializer_named(saved.qdq, "fc.weight_dequant.zero_point")), (std::vector<int64_t>{3}));
}

TEST(SaveModelLinearChannelWise, GemmTransBHasOneScalePerOutputChannel) {
  // W [N=3, K=4] with transB=1, on the per-row grid.
  ModelBuilder b;
  b.input("x", {-1, 4}).output("y", {-1, 3});
  std::vector<float> w;
  for (int n = 0; n < 3; ++n)
    for (int k = 0; k < 4; ++k) w.push_back(static_cast<float>(weight_int(n, k)) * kScaleW[n]);
  b.initializer("fc.weight", {3, 4}, w);
  const std::vector<float> bias = {0.1f, -0.2f, 0.3f};
  b.initializer("fc.bias", {3}, bias);
  set_int_attribute(b.layer("Gemm", "fc", {"x", "fc.weight", "fc.bias"}, "y"), "transB", 1);
  const Saved saved = run_save(b.model(), per_channel_record(), fresh_dir());
  // The QDQ model keeps W [N, K] with transB=1: the channels are axis 0.
  expect_per_channel_outputs(saved, 0);
  EXPECT_EQ(get_int_attribute(node_named(saved.deploy, "fc"), "transB", -1), 0);
  EXPECT_EQ(dims_of(initializer_named(saved.qdq, "fc.weight")), (std::vector<int64_t>{3, 4}));
  // Bias in each channel's accumulator scale, scale_w[n] * scale_d.
  const auto& b_int = initializer_named(saved.deploy, "fc.bias");
  for (int n = 0; n < 3; ++n)
    EXPECT_EQ(b_int.int32_data(n), static_cast<int32_t>(std::nearbyint(bias[n] / double{deq(n)}))) << n;
  const auto& bias_scale = initializer_named(saved.qdq, "fc.bias_dequant.scale");
  EXPECT_EQ(tensor_to_floats(bias_scale), (std::vector<float>{deq(0), deq(1), deq(2)}));
}

TEST(SaveModelLinearChannelWise, MatMulInOutWeightScalesItsColumns) {
  // x [N, 5, 4] -> MatMul W [K=4, N=3] (torch's weight transposed) -> Add bias.
  ModelBuilder b;
  b.input("x", {-1, 5, 4}).output("y", {-1, 5, 3});
  std::vector<float> w;
  for (int k = 0; k < 4; ++k)
    for (int n = 0; n < 3; ++n) w.push_back(static_cast<float>(weight_int(n, k)) * kScaleW[n]);
  b.initializer("fc.weight", {4, 3}, w);
  b.initializer("fc.bias", {3}, {0.5f, 0.0f, -0.5f});
  b.layer("MatMul", "fc", {"x", "fc.weight"}, "mm");
  b.node("Add", "/fc/Add", {"mm", "fc.bias"}, {"y"});
  const Saved saved = run_save(b.model(), per_channel_record(), fresh_dir());
  expect_per_channel_outputs(saved, 1);
}

TEST(SaveModelLinearChannelWise, AScaleCountOtherThanOneOrNIsRefused) {
  ModelBuilder b;
  b.input("x", {-1, 4}).output("y", {-1, 3});
  b.initializer("fc.weight", {4, 3}, std::vector<float>(12, 0.1f));
  b.layer("MatMul", "fc", {"x", "fc.weight"}, "y");
  const std::string dir = fresh_dir();
  save_onnx_model(b.model(), dir + "/modified.onnx");
  write_text(dir + "/record.txt", record_entry("fc", "    scale_d: 0.05\n    offset_d: 0\n    scale_w: 0.1\n"
                                                     "    scale_w: 0.1\n    offset_w: 0\n    offset_w: 0\n"));
  try {
    save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/out/net");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 'fc': scale_w has 2 values; expected 1 (per tensor) or 3 (one per "
                                         "output channel)"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace amct::test
