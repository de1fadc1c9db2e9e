// feed_reference_inputs: which tensor of the fake-quant model each QDQ
// layer's input quantization is fed with.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "amct/qdq_parity.h"
#include "save_test_support.h"

namespace amct::test {
namespace {

// Fake-quant form: x -> Conv "a" (accumulator "a_out") -> Mul
// "a.fakedequant.mul" -> Relu "relu" -> Conv "b"; the dequantized result
// also feeds Conv "c" directly.
onnx::ModelProto reference_model() {
  ModelBuilder b;
  b.input("x", {1, 2, 1, 1}).output("y1", {}).output("y2", {});
  b.node("Conv", "a", {"x", "a.weight"}, {"a_out"});
  b.node("Mul", "a.fakedequant.mul", {"a_out", "a.dequant.scale"}, {"a.dequant.output0"});
  b.node("Relu", "relu", {"a.dequant.output0"}, {"r"});
  b.node("Conv", "b", {"r", "b.weight"}, {"y2"});
  b.node("Conv", "c", {"a.dequant.output0", "c.weight"}, {"y1"});
  return b.model();
}

// QDQ form of the same layers: "a" is a ConvInteger whose "<a>.dequant"
// Mul gives the dequantized result the original name "a_out".
onnx::ModelProto qdq_model() {
  ModelBuilder b;
  b.input("x", {1, 2, 1, 1}).output("y1", {}).output("y2", {});
  b.node("QuantizeLinear", "a.input_quant", {"x", "a.s", "a.z"}, {"a.input_quant.output0"});
  b.node("ConvInteger", "a", {"a.input_quant.output0", "a.weight", "a.z"}, {"a.accumulator"});
  b.node("Mul", "a.dequant", {"a.accumulator", "a.dequant.scale"}, {"a_out"});
  b.node("QuantizeLinear", "c.input_quant", {"a_out", "c.s", "c.z"}, {"c.input_quant.output0"});
  b.node("DequantizeLinear", "c.input_dequant", {"c.input_quant.output0", "c.s", "c.z"}, {"c.in"});
  b.node("Conv", "c", {"c.in", "c.weight"}, {"y1"});
  b.node("Relu", "relu", {"a_out"}, {"r"});
  b.node("QuantizeLinear", "b.input_quant", {"r", "b.s", "b.z"}, {"b.input_quant.output0"});
  b.node("DequantizeLinear", "b.input_dequant", {"b.input_quant.output0", "b.s", "b.z"}, {"b.in"});
  b.node("Conv", "b", {"b.in", "b.weight"}, {"y2"});
  // Not a listed layer's quantization: left alone.
  b.node("QuantizeLinear", "d.input_quant", {"r", "d.s", "d.z"}, {"d.q"});
  return b.model();
}

const onnx::NodeProto& named(const onnx::ModelProto& model, const std::string& name) {
  for (const auto& node : model.graph().node())
    if (node.name() == name) return node;
  ADD_FAILURE() << "no node " << name;
  return model.graph().node(0);
}

TEST(FeedReferenceInputs, FeedsSameNodeTensorsAndLayerResultsFromTheReference) {
  onnx::ModelProto qdq = qdq_model();
  const std::vector<FedInput> fed = feed_reference_inputs(qdq, reference_model(), {"a", "b", "c"});
  ASSERT_EQ(fed.size(), 2u);
  // The reference's "a_out" is the accumulator; its result is after the dequant Mul.
  EXPECT_EQ(fed[0].input, "a_out.reference");
  EXPECT_EQ(fed[0].tensor, "a.dequant.output0");
  // "r" comes from node "relu" in both models.
  EXPECT_EQ(fed[1].input, "r.reference");
  EXPECT_EQ(fed[1].tensor, "r");
  EXPECT_EQ(named(qdq, "c.input_quant").input(0), "a_out.reference");
  EXPECT_EQ(named(qdq, "b.input_quant").input(0), "r.reference");
  // The model input is the same in both: not fed. Unlisted layers: unchanged.
  EXPECT_EQ(named(qdq, "a.input_quant").input(0), "x");
  EXPECT_EQ(named(qdq, "d.input_quant").input(0), "r");
  std::vector<std::string> inputs;
  for (const auto& input : qdq.graph().input()) inputs.push_back(input.name());
  EXPECT_EQ(inputs, (std::vector<std::string>{"x", "a_out.reference", "r.reference"}));
  EXPECT_EQ(qdq.graph().input(1).type().tensor_type().elem_type(), onnx::TensorProto::FLOAT);
}

TEST(FeedReferenceInputs, OneInputForLayersQuantizingOneTensor) {
  onnx::ModelProto qdq = qdq_model();
  // "d" quantizes "r" as "b" does.
  const std::vector<FedInput> fed = feed_reference_inputs(qdq, reference_model(), {"b", "d"});
  ASSERT_EQ(fed.size(), 1u);
  EXPECT_EQ(fed[0].input, "r.reference");
  EXPECT_EQ(named(qdq, "b.input_quant").input(0), "r.reference");
  EXPECT_EQ(named(qdq, "d.input_quant").input(0), "r.reference");
  EXPECT_EQ(qdq.graph().input_size(), 2);
}

TEST(FeedReferenceInputs, TensorsTheReferenceComputesDifferentlyAreNotFed) {
  onnx::ModelProto qdq = qdq_model();
  onnx::ModelProto reference = reference_model();
  // The reference's "r" now comes from another node.
  for (auto& node : *reference.mutable_graph()->mutable_node())
    if (node.name() == "relu") node.set_name("other");
  const std::vector<FedInput> fed = feed_reference_inputs(qdq, reference, {"b"});
  EXPECT_TRUE(fed.empty());
  EXPECT_EQ(named(qdq, "b.input_quant").input(0), "r");
  EXPECT_EQ(qdq.graph().input_size(), 1);
}

TEST(FeedReferenceInputs, AGemmResultIsFedFromTheReferenceResultThoughOneNodeMakesBoth) {
  // A QDQ Gemm "g" outputs its dequantized result under the original name;
  // the fake-quant Gemm "g" outputs the accumulator under that name.
  ModelBuilder r;
  r.input("x", {1, 2}).output("y", {});
  r.node("Gemm", "g", {"x", "g.weight"}, {"g_out"});
  r.node("Mul", "g.fakedequant.mul", {"g_out", "g.dequant.scale"}, {"g.dequant.output0"});
  r.node("Gemm", "h", {"g.dequant.output0", "h.weight"}, {"y"});
  ModelBuilder q;
  q.input("x", {1, 2}).output("y", {});
  q.node("DequantizeLinear", "g.input_dequant", {"x.q", "g.s", "g.z"}, {"g.in"});
  q.node("Gemm", "g", {"g.in", "g.weight"}, {"g_out"});
  q.node("QuantizeLinear", "h.input_quant", {"g_out", "h.s", "h.z"}, {"h.q"});
  q.node("DequantizeLinear", "h.input_dequant", {"h.q", "h.s", "h.z"}, {"h.in"});
  q.node("Gemm", "h", {"h.in", "h.weight"}, {"y"});
  onnx::ModelProto qdq = q.model();
  const std::vector<FedInput> fed = feed_reference_inputs(qdq, r.model(), {"g", "h"});
  ASSERT_EQ(fed.size(), 1u);
  EXPECT_EQ(fed[0].input, "g_out.reference");
  EXPECT_EQ(fed[0].tensor, "g.dequant.output0");
}

}  // namespace
}  // namespace amct::test
