// ApplyDMQBalancer on its own (docs/amct-reference.md#dmq-balancing): the
// Constant of 1/s and the Mul in front of each balanced layer, in the shape
// that broadcasts along the layer's input channels.
#include <gtest/gtest.h>

#include <cstring>

#include "amct/record_check.h"
#include "amct/save_passes.h"
#include "save_test_support.h"

namespace amct::test {
namespace {

// x -> Conv "conv" (Cin 2) -> Relu -> Flatten -> Gemm "fc" (transB=1, Cin 2) -> y; conv balanced by
// {2, 0.5}, fc by {4, 0.25}.
struct Balanced {
  onnx::ModelProto model;
  QuantPlan plan;
};

Balanced balanced(const std::string& conv_dtype = "float") {
  ModelBuilder b;
  b.input("x", {1, 2, 1, 1}).output("y", {1, 3});
  b.initializer("conv.weight", {2, 2, 1, 1}, {0.5f, -0.25f, 0.3f, 0.1f});
  b.initializer("fc.weight", {3, 2}, {0.2f, -0.4f, 0.6f, 0.8f, -1.0f, 0.1f});
  set_string_attribute(b.layer("Conv", "conv", {"x", "conv.weight"}, "conv_out"), "op_data_type", conv_dtype);
  b.node("Relu", "relu", {"conv_out"}, {"relu_out"});
  b.node("Flatten", "flatten", {"relu_out"}, {"flat"});
  set_int_attribute(b.layer("Gemm", "fc", {"flat", "fc.weight"}, "y"), "transB", 1);
  const std::string factors_conv = "    tensor_balance_factor: 2\n    tensor_balance_factor: 0.5\n";
  const std::string factors_fc = "    tensor_balance_factor: 4\n    tensor_balance_factor: 0.25\n";
  const std::string record =
      record_entry("conv", "    scale_d: 0.125\n    offset_d: -3\n    scale_w: 0.01\n    offset_w: 0\n" + factors_conv) +
      record_entry("fc", "    scale_d: 0.05\n    offset_d: 10\n    scale_w: 0.007874016\n    offset_w: 0\n" + factors_fc);
  Balanced out{b.model(), {}};
  out.plan = check_record(parse_record_text(record, "r.txt"), out.model.graph(), "r.txt", "m.onnx");
  return out;
}

const onnx::TensorProto& constant_value(const onnx::ModelProto& model, const std::string& name) {
  return node_named(model, name).attribute(0).t();
}

TEST(DmqBalancerPass, PutsMulOfTheInverseFactorsBeforeEachLayer) {
  Balanced f = balanced();
  EXPECT_EQ(f.plan.layers.at(0).balance_factor, (std::vector<float>{2.0f, 0.5f}));
  apply_dmq_balancer_pass(*f.model.mutable_graph(), f.plan);
  const auto& conv_mul = node_named(f.model, "conv.mul");
  EXPECT_EQ(conv_mul.op_type(), "Mul");
  EXPECT_EQ(conv_mul.input(0), "x");
  EXPECT_EQ(conv_mul.input(1), "conv.tensor_balance_factor.output0");
  EXPECT_EQ(node_named(f.model, "conv").input(0), "conv.mul.output0");
  const auto& conv_factor = constant_value(f.model, "conv.tensor_balance_factor");
  EXPECT_EQ(node_named(f.model, "conv.tensor_balance_factor").op_type(), "Constant");
  EXPECT_EQ(dims_of(conv_factor), (std::vector<int64_t>{1, 2, 1, 1}));
  EXPECT_EQ(tensor_to_floats(conv_factor), (std::vector<float>{0.5f, 2.0f}));
  // Gemm: [1, C], reading the Flatten's output.
  EXPECT_EQ(node_named(f.model, "fc.mul").input(0), "flat");
  EXPECT_EQ(node_named(f.model, "fc").input(0), "fc.mul.output0");
  const auto& fc_factor = constant_value(f.model, "fc.tensor_balance_factor");
  EXPECT_EQ(dims_of(fc_factor), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(tensor_to_floats(fc_factor), (std::vector<float>{0.25f, 4.0f}));
  // InsertQuant then quantizes the balanced input.
  insert_quant_pass(*f.model.mutable_graph(), f.plan);
  EXPECT_EQ(node_named(f.model, "conv.quant").input(0), "conv.mul.output0");
}

TEST(DmqBalancerPass, Float16LayersGetAFloat16Constant) {
  Balanced f = balanced("float16");
  apply_dmq_balancer_pass(*f.model.mutable_graph(), f.plan);
  const auto& factor = constant_value(f.model, "conv.tensor_balance_factor");
  EXPECT_EQ(factor.data_type(), onnx::TensorProto::FLOAT16);
  EXPECT_EQ(tensor_to_floats(factor), (std::vector<float>{0.5f, 2.0f}));
  EXPECT_EQ(constant_value(f.model, "fc.tensor_balance_factor").data_type(), onnx::TensorProto::FLOAT);
}

TEST(DmqBalancerPass, LayersWithoutFactorsAreLeftAlone) {
  Balanced f = balanced();
  f.plan.layers.at(1).balance_factor.clear();
  apply_dmq_balancer_pass(*f.model.mutable_graph(), f.plan);
  EXPECT_EQ(find_node(f.model.graph(), "fc.mul"), nullptr);
  EXPECT_EQ(node_named(f.model, "fc").input(0), "flat");
}

}  // namespace
}  // namespace amct::test
