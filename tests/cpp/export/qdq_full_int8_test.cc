// The full-INT8 QDQ model: which tensors it quantizes (qdq_tensors.h) and
// the QuantizeLinear / DequantizeLinear that qdq_tensor_pass puts on them.
// ONNX Runtime's integer kernels and numbers: tests/python/test_full_int8_qdq.py.
#include <gtest/gtest.h>

#include <algorithm>

#include "amct/error.h"
#include "amct/qdq_tensors.h"
#include "amct/save_model.h"
#include "amct/tensor_ranges.h"
#include "save_test_support.h"

namespace amct::test {
namespace {

// x -> c1 -> Relu -> a ; a -> c2 -> b ; Add(a, b) -> Relu -> s ;
// s -> GlobalAveragePool -> Sigmoid -> Mul(s, .) -> m ; Concat(m, s) -> c3 -> y ;
// Mul(s, 0.5) is fed a constant and stays float.
ModelBuilder block() {
  ModelBuilder b;
  b.input("x", {-1, 2, 4, 4}).output("y", {-1, 2, 4, 4}).output("half", {-1, 2, 4, 4});
  b.initializer("c1.weight", {2, 2, 1, 1}, {0.5f, -0.25f, 1.0f, 0.1f});
  b.initializer("c2.weight", {2, 2, 1, 1}, {0.2f, 0.3f, -0.4f, 0.5f});
  b.initializer("c3.weight", {2, 4, 1, 1}, std::vector<float>(8, 0.25f));
  b.initializer("half.value", {}, {0.5f});
  b.layer("Conv", "c1", {"x", "c1.weight"}, "c1_out");
  b.node("Relu", "relu1", {"c1_out"}, {"a"});
  b.layer("Conv", "c2", {"a", "c2.weight"}, "b");
  b.node("Add", "add", {"a", "b"}, {"sum"});
  b.node("Relu", "relu2", {"sum"}, {"s"});
  b.node("GlobalAveragePool", "gap", {"s"}, {"pooled"});
  b.node("Sigmoid", "gate", {"pooled"}, {"gated"});
  b.node("Mul", "scale", {"s", "gated"}, {"m"});
  set_int_attribute(b.node("Concat", "cat", {"m", "s"}, {"joined"}), "axis", 1);
  b.layer("Conv", "c3", {"joined", "c3.weight"}, "y");
  b.node("Mul", "halve", {"s", "half.value"}, {"half"});
  return b;
}

// x -> c1 -> Relu -> MaxPool (2x2, stride 2) -> p -> c2 -> `c2_output`;
// the caller declares the graph outputs.
ModelBuilder pooled_convs(const std::string& c2_output) {
  ModelBuilder b;
  b.input("x", {-1, 2, 4, 4});
  b.initializer("c1.weight", {2, 2, 1, 1}, {0.5f, -0.25f, 1.0f, 0.1f});
  b.initializer("c2.weight", {2, 2, 1, 1}, {0.2f, 0.3f, -0.4f, 0.5f});
  b.layer("Conv", "c1", {"x", "c1.weight"}, "c1_out");
  b.node("Relu", "relu", {"c1_out"}, {"r"});
  onnx::NodeProto& pool = b.node("MaxPool", "pool", {"r"}, {"p"});
  set_ints_attribute(pool, "kernel_shape", {2, 2});
  set_ints_attribute(pool, "strides", {2, 2});
  b.layer("Conv", "c2", {"p", "c2.weight"}, c2_output);
  return b;
}

TEST(FullQdqTensors, ListsTheTensorsOfOpsWhoseInputsAreQuantized) {
  ModelBuilder b = block();
  const auto tensors = full_qdq_tensors(b.graph(), {"c1", "c2", "c3"}, false);
  // Add's output is quantized after its Relu; GlobalAveragePool, Sigmoid, Mul
  // and Concat each read quantized values; Mul by a constant does not. c3's
  // result is a graph output, which stays float.
  EXPECT_EQ(tensors, (std::vector<std::string>{"a", "b", "s", "pooled", "gated", "m", "joined"}));
  // Without c2 quantized, b carries float values: Add and everything after
  // stays float. c1's result still gets a grid, as it feeds the float Add.
  ModelBuilder c = block();
  EXPECT_EQ(full_qdq_tensors(c.graph(), {"c1", "c3"}, false), std::vector<std::string>{"a"});
  // A result that reaches layers only (through Relu, MaxPool) needs no range.
  ModelBuilder d = pooled_convs("z");
  d.output("z", {-1, 2, 2, 2});
  EXPECT_EQ(full_qdq_tensors(d.graph(), {"c1", "c2"}, false), std::vector<std::string>{});
  // A float op after the last conv: its result gets a grid (QLinearConv, then dequantized).
  d.node("ReduceMean", "mean", {"z"}, {"pooled"});
  d.graph().mutable_output(0)->set_name("pooled");
  EXPECT_EQ(full_qdq_tensors(d.graph(), {"c1", "c2"}, false), std::vector<std::string>{"z"});
  // c1's result needs none either when its pooled values also feed an Add
  // beside c2: the Add reads them on c2's grid (QdqOutput requantizes c1 with it).
  d.node("Add", "add", {"p", "z"}, {"sum"});
  d.graph().mutable_output(0)->set_name("sum");
  EXPECT_EQ(full_qdq_tensors(d.graph(), {"c1", "c2"}, false), (std::vector<std::string>{"p", "z", "sum"}));
}

TEST(FullQdqTensors, ActivationMatMulsOnlyWhenAsked) {
  ModelBuilder b;
  b.input("q", {-1, 4, 8}).input("k", {-1, 8, 4}).output("scores", {-1, 4, 4});
  b.node("MatMul", "attn", {"q", "k"}, {"scores"});
  EXPECT_EQ(full_qdq_tensors(b.graph(), {}, false), std::vector<std::string>{});
  EXPECT_EQ(full_qdq_tensors(b.graph(), {}, true), (std::vector<std::string>{"q", "k"}));
}

std::string range_entry(const std::string& tensor, float scale, int offset) {
  return "{\"layer\": \"" + tensor + "\", \"role\": \"tensor\", \"scale\": " + std::to_string(scale) +
         ", \"offset\": " + std::to_string(offset) + ", \"bits\": 8}";
}

const std::string kRecord =
    record_entry("c1", "    scale_d: 0.02\n    offset_d: 3\n    scale_w: 0.01\n    offset_w: 0\n") +
    record_entry("c2", "    scale_d: 0.04\n    offset_d: -128\n    scale_w: 0.004\n    offset_w: 0\n") +
    record_entry("c3", "    scale_d: 0.05\n    offset_d: -128\n    scale_w: 0.002\n    offset_w: 0\n");

struct Saved {
  onnx::ModelProto qdq;
  std::string dir;
};

Saved save(const std::string& ranges, SaveOptions::QdqMode mode) {
  const std::string dir = fresh_dir();
  save_onnx_model(block().model(), dir + "/modified.onnx");
  write_text(dir + "/record.txt", kRecord);
  if (!ranges.empty()) write_text(tensor_ranges_path(dir + "/record.txt"), ranges);
  SaveOptions options{false, false, true};
  options.qdq_mode = mode;
  const auto written = save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/net", options).written;
  return {load_onnx_model(written.at(0)), dir};
}

const std::string kRanges = "{\"version\": 1, \"ranges\": [" + range_entry("a", 0.02f, -128) + ", " +
                            range_entry("b", 0.03f, 5) + ", " + range_entry("s", 0.04f, -128) + ", " +
                            range_entry("pooled", 0.01f, -128) + ", " + range_entry("gated", 0.004f, -128) + ", " +
                            range_entry("m", 0.03f, -128) + ", " + range_entry("joined", 0.06f, -128) + "]}";

TEST(QdqTensorPass, QuantizesEachListedTensorOnceSharingTheLayersGrid) {
  const onnx::ModelProto qdq = save(kRanges, SaveOptions::QdqMode::kAuto).qdq;
  // c2's result feeds Add only: its own range. c1's is quantized after its
  // Relu; c3's, a graph output without a range, stays ConvInteger.
  const onnx::NodeProto& b_quant = node_named(qdq, "b.quant");
  EXPECT_EQ(b_quant.input(0), "b");
  EXPECT_FLOAT_EQ(tensor_to_floats(initializer_named(qdq, "b.quant.scale"))[0], 0.03f);
  EXPECT_EQ(static_cast<uint8_t>(initializer_named(qdq, "b.quant.zero_point").raw_data()[0]), 133);
  EXPECT_EQ(node_named(qdq, "add").input(1), "b.dequant.output0");
  EXPECT_EQ(node_named(qdq, "c1").op_type(), "Conv");
  EXPECT_EQ(node_named(qdq, "c2").op_type(), "Conv");
  EXPECT_EQ(node_named(qdq, "c3").op_type(), "ConvInteger");
  // a also feeds c2: quantized once, on c2's input grid (record), not the sidecar's.
  EXPECT_EQ(node_named(qdq, "a.dequant").input(0), "c2.input_quant.output0");
  EXPECT_EQ(node_named(qdq, "a.dequant").input(1), "c2.input_quant.scale");
  EXPECT_EQ(node_named(qdq, "add").input(0), "a.dequant.output0");
  // joined feeds c3 only: c3's own QuantizeLinear, nothing added.
  EXPECT_THROW(node_named(qdq, "joined.dequant"), std::exception);
  // s feeds the float Mul by 0.5 too: that one reads the dequantized value.
  EXPECT_EQ(node_named(qdq, "halve").input(0), "s.dequant.output0");
  EXPECT_EQ(node_named(qdq, "gap").input(0), "s.dequant.output0");
  EXPECT_EQ(node_named(qdq, "cat").input(0), "m.dequant.output0");
}

// x -> c1 -> Relu -> MaxPool -> p ; p -> c2 -> b ; Add(p, b) -> y: a
// residual block after a pooled conv (the Fashion-MNIST CNN).
TEST(QdqTensorPass, ResultPooledIntoALayerAndAnAddIsRequantizedOnTheLayersGrid) {
  ModelBuilder b = pooled_convs("b");
  b.output("y", {-1, 2, 2, 2});
  b.node("Add", "add", {"p", "b"}, {"y"});
  const std::string dir = fresh_dir();
  save_onnx_model(b.model(), dir + "/modified.onnx");
  write_text(dir + "/record.txt",
             record_entry("c1", "    scale_d: 0.02\n    offset_d: 3\n    scale_w: 0.01\n    offset_w: 0\n") +
                 record_entry("c2", "    scale_d: 0.04\n    offset_d: -128\n    scale_w: 0.004\n    offset_w: 0\n"));
  write_text(tensor_ranges_path(dir + "/record.txt"),
             "{\"version\": 1, \"ranges\": [" + range_entry("p", 0.05f, -128) + ", " + range_entry("b", 0.03f, 5) +
                 ", " + range_entry("y", 0.06f, -128) + "]}");
  const auto written =
      save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/net", SaveOptions{false, false, true}).written;
  const onnx::ModelProto qdq = load_onnx_model(written.at(0));
  // c1 stays a Conv (QLinearConv in Runtime), requantized on c2's grid
  // before its Relu and MaxPool, which then run on UINT8; the Add reads p
  // on that same grid.
  EXPECT_EQ(node_named(qdq, "c1").op_type(), "Conv");
  const onnx::NodeProto& requant = node_named(qdq, "c1.output_quant");
  EXPECT_EQ(requant.input(0), "c1.output");
  EXPECT_EQ(requant.input(1), "c2.input_quant.scale");
  EXPECT_EQ(node_named(qdq, "relu").input(0), "c1_out");
  EXPECT_EQ(node_named(qdq, "p.dequant").input(0), "c2.input_quant.output0");
  EXPECT_EQ(node_named(qdq, "add").input(0), "p.dequant.output0");
  // Without the ranges, p's float use by the Add leaves c1 without an output grid.
  write_text(tensor_ranges_path(dir + "/record.txt"), "{\"version\": 1, \"ranges\": []}");
  const auto layers =
      save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/plain", SaveOptions{false, false, true}).written;
  EXPECT_EQ(node_named(load_onnx_model(layers.at(0)), "c1").op_type(), "ConvInteger");
}

TEST(QdqTensorPass, LayersModeAndMissingRanges) {
  // layers: the sidecar is ignored and c2 becomes ConvInteger, as without one.
  const onnx::ModelProto layers = save(kRanges, SaveOptions::QdqMode::kLayers).qdq;
  const onnx::ModelProto plain = save("", SaveOptions::QdqMode::kAuto).qdq;
  EXPECT_EQ(layers.SerializeAsString(), plain.SerializeAsString());
  EXPECT_EQ(node_named(layers, "c2").op_type(), "ConvInteger");
  try {
    save("", SaveOptions::QdqMode::kFull);
    FAIL() << "full without ranges";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("qdq_mode 'full' needs the tensor ranges that calibration writes to '"),
              std::string::npos)
        << e.what();
  }
  try {
    save("{\"version\": 1, \"ranges\": [" + range_entry("nope", 0.1f, 0) + "]}", SaveOptions::QdqMode::kAuto);
    FAIL() << "unknown tensor";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("': tensor 'nope' is not in modified ONNX file '"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace amct::test
