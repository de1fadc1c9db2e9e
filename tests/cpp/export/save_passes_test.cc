// Each save pass on its own: a small modified graph and record, one pass (or
// the passes it builds on), and the graph and numbers after it. The whole
// save is tested in save_model_*_test.cc.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "amct/record_check.h"
#include "amct/save_passes.h"
#include "save_test_support.h"

namespace amct::test {
namespace {

constexpr float kScaleD = 0.125f;
const std::vector<float> kConvWeight = {0.5f, -0.25f, 0.3f, 0.1f};  // [2, 2, 1, 1]
const std::vector<float> kScaleW = {0.5f / 127.0f, 0.3f / 127.0f};

// x -> Conv "conv" (per channel, bias) -> Relu -> Gemm "fc" (transB=1, per tensor) -> y
struct Fixture {
  onnx::ModelProto model;
  QuantPlan plan;

  onnx::GraphProto& graph() { return *model.mutable_graph(); }
  const onnx::NodeProto& node(const std::string& name) { return node_named(model, name); }
  const onnx::TensorProto& tensor(const std::string& name) { return initializer_named(model, name); }
};

Fixture make_fixture() {
  ModelBuilder b;
  b.input("x", {1, 2, 1, 1}).output("y", {1, 3});
  b.initializer("conv.weight", {2, 2, 1, 1}, kConvWeight);
  b.initializer("conv.bias", {2}, {0.01f, -0.02f});
  b.initializer("fc.weight", {3, 2}, {0.2f, -0.4f, 0.6f, 0.8f, -1.0f, 0.1f});
  b.layer("Conv", "conv", {"x", "conv.weight", "conv.bias"}, "conv_out");
  b.node("Relu", "relu", {"conv_out"}, {"relu_out"});
  b.node("Flatten", "flatten", {"relu_out"}, {"flat"});
  set_int_attribute(b.layer("Gemm", "fc", {"flat", "fc.weight"}, "y"), "transB", 1);
  std::string record = record_entry("conv", "    scale_d: 0.125\n    offset_d: -3\n    scale_w: " +
                                                std::to_string(kScaleW[0]) + "\n    scale_w: " +
                                                std::to_string(kScaleW[1]) + "\n    offset_w: 0\n    offset_w: 0\n");
  record += record_entry("fc", "    scale_d: 0.05\n    offset_d: 10\n    scale_w: 0.007874016\n    offset_w: 0\n");
  Fixture f{b.model(), {}};
  f.plan = check_record(parse_record_text(record, "r.txt"), f.model.graph(), "r.txt", "m.onnx");
  return f;
}

std::vector<int> float_values(const onnx::TensorProto& t) {
  std::vector<int> out;
  for (float v : tensor_to_floats(t)) out.push_back(static_cast<int>(v));
  return out;
}

// round(w / scale_w) per output channel, with the scales as the record holds them.
std::vector<int> conv_integers(const QuantPlan& plan) {
  const std::vector<float>& s = plan.layers.at(0).weight_scale;
  std::vector<int> out;
  for (size_t i = 0; i < kConvWeight.size(); ++i) out.push_back(static_cast<int>(std::nearbyint(kConvWeight[i] / s[i / 2])));
  return out;
}

TEST(SavePass, GemmTransBTransposesTheWeightOffline) {
  Fixture f = make_fixture();
  gemm_trans_b_pass(f.graph(), f.plan);
  EXPECT_EQ(get_int_attribute(f.node("fc"), "transB", 1), 0);
  EXPECT_EQ(dims_of(f.tensor("fc.weight")), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(tensor_to_floats(f.tensor("fc.weight")), (std::vector<float>{0.2f, 0.6f, -1.0f, -0.4f, 0.8f, 0.1f}));
  // The conv is untouched.
  EXPECT_EQ(tensor_to_floats(f.tensor("conv.weight")), kConvWeight);
}

TEST(SavePass, InsertQuantPutsAscendQuantOnEachLayerInput) {
  Fixture f = make_fixture();
  insert_quant_pass(f.graph(), f.plan);
  const auto& quant = f.node("conv.quant");
  EXPECT_EQ(quant.op_type(), "AscendQuant");
  EXPECT_EQ(quant.input(0), "x");
  EXPECT_EQ(f.node("conv").input(0), "conv.quant.output0");
  EXPECT_EQ(get_float_attribute(quant, "scale", 0), 8.0f);
  EXPECT_EQ(get_float_attribute(quant, "offset", 0), -3.0f);
  EXPECT_EQ(get_string_attribute(quant, "dst_type", ""), "INT8");
  EXPECT_EQ(get_float_attribute(f.node("fc.quant"), "scale", 0), static_cast<float>(1.0 / 0.05f));
}

TEST(SavePass, InsertWeightQuantStoresTheIntegers) {
  Fixture f = make_fixture();
  insert_weight_quant_pass(f.graph(), f.plan);
  const auto& w = f.tensor("conv.weight");
  EXPECT_EQ(w.data_type(), onnx::TensorProto::INT8);
  EXPECT_EQ(dims_of(w), (std::vector<int64_t>{2, 2, 1, 1}));
  EXPECT_EQ(int8_values(w), conv_integers(f.plan));
  EXPECT_EQ(int8_values(w)[0], 127);
}

TEST(SavePass, InsertDequantPacksTheScalesAndRewiresConsumers) {
  Fixture f = make_fixture();
  insert_dequant_pass(f.graph(), f.plan);
  const auto& dequant = f.node("conv.dequant");
  EXPECT_EQ(dequant.op_type(), "AscendDequant");
  EXPECT_EQ(dequant.input(0), "conv_out");
  EXPECT_EQ(f.node("relu").input(0), "conv.dequant.output0");
  const auto& param = f.tensor("conv.dequant.param");
  ASSERT_EQ(param.uint64_data_size(), 2);
  const float expected = static_cast<float>(static_cast<double>(f.plan.layers[0].weight_scale[0]) * kScaleD);
  EXPECT_EQ(unpack_dequant_scale(param.uint64_data(0)), expected);
  EXPECT_EQ(param.uint64_data(0) >> 32, 0u);
  // A graph output keeps its name on the dequant.
  EXPECT_EQ(f.node("fc.dequant").output(0), "y");
  EXPECT_EQ(f.node("fc").output(0), "fc_output0");
}

TEST(SavePass, InsertBiasQuantUsesTheAccumulatorScale) {
  Fixture f = make_fixture();
  insert_bias_quant_pass(f.graph(), f.plan);
  const auto& bias = f.tensor("conv.bias");
  EXPECT_EQ(bias.data_type(), onnx::TensorProto::INT32);
  const std::vector<float> deq = dequant_scales(f.plan.layers[0]);
  EXPECT_EQ(bias.int32_data(0), static_cast<int32_t>(std::nearbyint(0.01 / deq[0])));
  EXPECT_EQ(bias.int32_data(1), static_cast<int32_t>(std::nearbyint(-0.02 / deq[1])));
}

TEST(SavePass, QuantFusionKeepsOneQuantPerTensorAndFactors) {
  ModelBuilder b;
  b.input("x", {1, 2}).output("a", {1, 2}).output("c", {1, 2});
  b.initializer("p.weight", {2, 2}, {1, 0, 0, 1});
  b.initializer("q.weight", {2, 2}, {0, 1, 1, 0});
  b.layer("Gemm", "p", {"x", "p.weight"}, "a");
  b.layer("Gemm", "q", {"x", "q.weight"}, "c");
  const std::string fields = "    scale_d: 0.1\n    offset_d: 0\n    scale_w: 0.01\n    offset_w: 0\n";
  onnx::ModelProto model = b.model();
  const QuantPlan plan = check_record(parse_record_text(record_entry("p", fields) + record_entry("q", fields), "r"),
                                      model.graph(), "r", "m");
  insert_quant_pass(*model.mutable_graph(), plan);
  quant_fusion_pass(*model.mutable_graph(), plan);
  EXPECT_EQ(node_names(model), (std::vector<std::string>{"p", "q", "p.quant"}));
  EXPECT_EQ(node_named(model, "q").input(0), "p.quant.output0");
}

TEST(SavePass, ReplaceQuantComputesTheIntegerInputInFloat) {
  Fixture f = make_fixture();
  insert_quant_pass(f.graph(), f.plan);
  replace_quant_pass(f.graph(), f.plan);
  EXPECT_THROW(node_named(f.model, "conv.quant"), std::exception);
  EXPECT_EQ(f.node("conv.quant.fakequant.mul").input(0), "x");
  EXPECT_EQ(f.node("conv.quant.fakequant.sub").output(0), "conv.quant.output0");
  EXPECT_EQ(tensor_to_floats(constant_value(f.model, "conv.quant.fakequant.scale")), (std::vector<float>{8.0f}));
  EXPECT_EQ(tensor_to_floats(constant_value(f.model, "conv.quant.fakequant.offset")), (std::vector<float>{-3.0f}));
  EXPECT_EQ(tensor_to_floats(constant_value(f.model, "conv.quant.fakequant.min_val")), (std::vector<float>{-128.0f}));
  EXPECT_EQ(tensor_to_floats(constant_value(f.model, "conv.quant.fakequant.max_val")), (std::vector<float>{127.0f}));
  EXPECT_EQ(f.node("conv.quant.fakequant.clip").op_type(), "Clip");
}

TEST(SavePass, WeightFakequantHoldsTheIntegersAsFloat) {
  Fixture f = make_fixture();
  insert_weight_quant_pass(f.graph(), f.plan);
  weight_fakequant_pass(f.graph(), f.plan);
  EXPECT_EQ(f.tensor("conv.weight").data_type(), onnx::TensorProto::FLOAT);
  EXPECT_EQ(float_values(f.tensor("conv.weight")), conv_integers(f.plan));
}

TEST(SavePass, ReplaceDequantMultipliesByTheChannelScales) {
  Fixture f = make_fixture();
  insert_dequant_pass(f.graph(), f.plan);
  replace_dequant_pass(f.graph(), f.plan);
  const auto& scale = constant_value(f.model, "conv.fakedequant.dqscale");
  EXPECT_EQ(dims_of(scale), (std::vector<int64_t>{1, 2, 1, 1}));
  EXPECT_EQ(tensor_to_floats(scale), dequant_scales(f.plan.layers[0]));
  EXPECT_EQ(f.node("conv.fakedequant.mul").input(0), "conv_out");
  EXPECT_EQ(f.node("conv.fakedequant.mul").output(0), "conv.dequant.output0");
  EXPECT_THROW(initializer_named(f.model, "conv.dequant.param"), std::exception);
}

TEST(SavePass, ReplaceBiasQuantKeepsTheIntegersAsFloat) {
  Fixture f = make_fixture();
  insert_bias_quant_pass(f.graph(), f.plan);
  const int32_t first = f.tensor("conv.bias").int32_data(0);
  replace_bias_quant_pass(f.graph(), f.plan);
  EXPECT_EQ(f.tensor("conv.bias").data_type(), onnx::TensorProto::FLOAT);
  EXPECT_EQ(tensor_to_floats(f.tensor("conv.bias"))[0], static_cast<float>(first));
}

TEST(SavePass, RemoveOpDataTypeDropsTheAttribute) {
  Fixture f = make_fixture();
  remove_op_data_type_pass(f.graph(), f.plan);
  EXPECT_EQ(find_attribute(f.node("conv"), "op_data_type"), nullptr);
  EXPECT_EQ(find_attribute(f.node("fc"), "op_data_type"), nullptr);
}

TEST(SavePass, QdqInputQuantizesOnUint8WithTheShiftedZeroPoint) {
  Fixture f = make_fixture();
  qdq_input_pass(f.graph(), f.plan);
  const auto& quant = f.node("conv.input_quant");
  EXPECT_EQ(quant.op_type(), "QuantizeLinear");
  EXPECT_EQ(tensor_to_floats(f.tensor(quant.input(1))), (std::vector<float>{kScaleD}));
  const auto& zero = f.tensor(quant.input(2));
  EXPECT_EQ(zero.data_type(), onnx::TensorProto::UINT8);
  EXPECT_EQ(static_cast<uint8_t>(zero.raw_data()[0]), 125);  // offset_d -3 + 128
  EXPECT_EQ(f.node("conv").input(0), "conv.input_dequant.output0");
}

TEST(SavePass, QdqWeightStoresAmctIntegersPerAxis) {
  Fixture f = make_fixture();
  qdq_weight_pass(f.graph(), f.plan);
  const auto& w = f.tensor("conv.weight");
  EXPECT_EQ(w.data_type(), onnx::TensorProto::INT8);
  EXPECT_EQ(int8_values(w), conv_integers(f.plan));
  const auto& dequant = f.node("conv.weight_dequant");
  EXPECT_EQ(get_int_attribute(dequant, "axis", -1), 0);
  EXPECT_EQ(tensor_to_floats(f.tensor(dequant.input(1))), f.plan.layers[0].weight_scale);
  const auto& bias = f.tensor("conv.bias");
  EXPECT_EQ(bias.data_type(), onnx::TensorProto::INT32);
  EXPECT_EQ(tensor_to_floats(f.tensor(f.node("conv.bias_dequant").input(1))), dequant_scales(f.plan.layers[0]));
}

TEST(SavePass, QdqDeconvToConvRegroupsABlockUpsamplingAlone) {
  ModelBuilder b;
  b.input("x", {1, 2, 3, 3}).output("y", {1, 1, 6, 6});
  b.initializer("up.weight", {2, 1, 2, 2}, {0.1f, 0.2f, 0.3f, 0.4f, -0.1f, -0.2f, -0.3f, -0.4f});
  onnx::NodeProto& up = b.layer("ConvTranspose", "up", {"x", "up.weight"}, "y");
  onnx::AttributeProto* strides = up.add_attribute();
  strides->set_name("strides");
  strides->set_type(onnx::AttributeProto::INTS);
  strides->add_ints(2);
  strides->add_ints(2);
  onnx::ModelProto model = b.model();
  const QuantPlan plan = check_record(
      parse_record_text(record_entry("up", "    scale_d: 0.1\n    offset_d: 0\n    scale_w: 0.004\n    offset_w: 0\n"), "r"),
      model.graph(), "r", "m");
  qdq_deconv_to_conv_pass(*model.mutable_graph(), plan);
  EXPECT_EQ(node_named(model, "up").op_type(), "Conv");
  EXPECT_EQ(node_named(model, "up.depth_to_space").output(0), "y");
  // W'[(co * 2 + a) * 2 + b, ci] = W[ci, co, a, b]
  EXPECT_EQ(dims_of(initializer_named(model, "up.weight")), (std::vector<int64_t>{4, 2, 1, 1}));
  EXPECT_EQ(tensor_to_floats(initializer_named(model, "up.weight")),
            (std::vector<float>{0.1f, -0.1f, 0.2f, -0.2f, 0.3f, -0.3f, 0.4f, -0.4f}));
}

TEST(SavePass, QdqOutputRequantizesForTheConsumerOrUsesConvInteger) {
  Fixture f = make_fixture();
  qdq_output_pass(f.graph(), f.plan);
  // conv -> Relu -> Flatten -> fc: the conv result is requantized with fc's
  // input factors right after the conv, so ONNX Runtime fuses QLinearConv.
  const auto& requant = f.node("conv.output_quant");
  EXPECT_EQ(requant.op_type(), "QuantizeLinear");
  EXPECT_EQ(requant.input(0), f.node("conv").output(0));
  EXPECT_EQ(requant.input(1), "fc.input_quant.scale");
  EXPECT_EQ(tensor_to_floats(f.tensor("fc.input_quant.scale")), (std::vector<float>{0.05f}));
  EXPECT_EQ(static_cast<uint8_t>(f.tensor("fc.input_quant.zero_point").raw_data()[0]), 138);  // 10 + 128

  // A conv whose output reaches no quantized layer becomes ConvInteger.
  ModelBuilder b;
  b.input("x", {1, 1, 2, 2}).output("y", {1, 1, 2, 2});
  b.initializer("c.weight", {1, 1, 1, 1}, {0.5f});
  b.layer("Conv", "c", {"x", "c.weight"}, "y");
  onnx::ModelProto model = b.model();
  const QuantPlan plan = check_record(
      parse_record_text(record_entry("c", "    scale_d: 0.1\n    offset_d: 0\n    scale_w: 0.004\n    offset_w: 0\n"), "r"),
      model.graph(), "r", "m");
  qdq_output_pass(*model.mutable_graph(), plan);
  EXPECT_EQ(node_named(model, "c").op_type(), "ConvInteger");
}

// Found by fuzz_onnx_save (fuzz/regressions/onnx_save/consumer_node_without_output.onnx):
// the pass must not read the result of a consumer that has none, even on a
// graph that skipped the input check.
TEST(SavePass, QdqOutputStopsAtAConsumerWithoutOutputs) {
  ModelBuilder b;
  b.input("x", {1, 1, 2, 2}).output("y", {1, 1, 2, 2});
  b.initializer("c.weight", {1, 1, 1, 1}, {0.5f});
  b.layer("Conv", "c", {"x", "c.weight"}, "t");
  b.node("Relu", "sink", {"t"}, {});
  b.node("Relu", "relu", {"t"}, {"y"});
  onnx::ModelProto model = b.model();
  const QuantPlan plan = check_record(
      parse_record_text(record_entry("c", "    scale_d: 0.1\n    offset_d: 0\n    scale_w: 0.004\n    offset_w: 0\n"), "r"),
      model.graph(), "r", "m");
  qdq_output_pass(*model.mutable_graph(), plan);
  EXPECT_EQ(node_named(model, "c").op_type(), "ConvInteger");
}

}  // namespace
}  // namespace amct::test
