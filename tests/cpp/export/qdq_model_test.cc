// The QDQ model of save_model: structure per layer kind and the integer
// values. ONNX Runtime's numbers and fusions are checked by
// tests/python/test_qdq.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <utility>

#include "amct/error.h"

#include "amct/save_model.h"
#include "save_test_support.h"

namespace amct::test {
namespace {

std::string entry(const std::string& layer, const std::string& scale_d, int offset_d, const std::vector<float>& scale_w) {
  std::string fields = "    scale_d: " + scale_d + "\n    offset_d: " + std::to_string(offset_d) + "\n";
  for (float s : scale_w) fields += "    scale_w: " + std::to_string(s) + "\n";
  for (size_t i = 0; i < scale_w.size(); ++i) fields += "    offset_w: 0\n";
  return record_entry(layer, fields);
}

onnx::ModelProto save_qdq(const ModelBuilder& b, const std::string& record) {
  const std::string dir = fresh_dir();
  save_onnx_model(b.model(), dir + "/modified.onnx");
  write_text(dir + "/record.txt", record);
  const auto written = save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/net", {false, false, true}).written;
  EXPECT_EQ(written, std::vector<std::string>{dir + "/net_qdq_model.onnx"});
  return load_onnx_model(written.at(0));
}

size_t count_op(const onnx::ModelProto& model, const std::string& op) {
  const auto ops = op_types(model);
  return static_cast<size_t>(std::count(ops.begin(), ops.end(), op));
}

// x -> c1 -> Relu -> c2 -> up (ConvTranspose k=s=2) -> Flatten -> fc -> y
ModelBuilder chain() {
  ModelBuilder b;
  b.input("x", {-1, 2, 4, 4}).output("y", {-1, 3});
  b.initializer("c1.weight", {4, 2, 1, 1}, {0.5f, -0.25f, 1.0f, 0.1f, -1.0f, 0.3f, 0.2f, -0.2f});
  b.initializer("c1.bias", {4}, {0.1f, -0.2f, 0.3f, 0.0f});
  b.initializer("c2.weight", {4, 4, 1, 1}, std::vector<float>(16, 0.25f));
  std::vector<float> up(4 * 2 * 2 * 2);
  for (size_t i = 0; i < up.size(); ++i) up[i] = static_cast<float>(i) / 32.0f;
  b.initializer("up.weight", {4, 2, 2, 2}, up);
  b.initializer("up.bias", {2}, {0.5f, -0.5f});
  b.initializer("fc.weight", {3, 128}, std::vector<float>(3 * 128, 0.01f));
  b.initializer("fc.bias", {3}, {0.0f, 1.0f, 2.0f});
  b.layer("Conv", "c1", {"x", "c1.weight", "c1.bias"}, "c1_out");
  b.node("Relu", "relu", {"c1_out"}, {"relu_out"});
  b.layer("Conv", "c2", {"relu_out", "c2.weight"}, "c2_out");
  onnx::NodeProto& deconv = b.layer("ConvTranspose", "up", {"c2_out", "up.weight", "up.bias"}, "up_out");
  auto* strides = deconv.add_attribute();
  strides->set_name("strides");
  strides->set_type(onnx::AttributeProto::INTS);
  strides->add_ints(2);
  strides->add_ints(2);
  b.node("Flatten", "flatten", {"up_out"}, {"flat"});
  set_int_attribute(b.layer("Gemm", "fc", {"flat", "fc.weight", "fc.bias"}, "y"), "transB", 1);
  return b;
}

const std::string kChainRecord = entry("c1", "0.02", 3, {0.01f, 0.02f, 0.01f, 0.01f}) +
                                 entry("c2", "0.05", -128, {0.002f, 0.002f, 0.002f, 0.002f}) +
                                 entry("up", "0.1", -7, {0.001f, 0.002f}) + entry("fc", "0.2", 10, {0.0001f});

TEST(QdqModel, InputsWeightsAndBiasesInStandardQdq) {
  const onnx::ModelProto qdq = save_qdq(chain(), kChainRecord);
  EXPECT_EQ(qdq.opset_import(0).version(), 18);
  EXPECT_EQ(qdq.graph().input(0).type().tensor_type().shape().dim(0).dim_param(), "batch");

  const onnx::NodeProto& quant = node_named(qdq, "c1.input_quant");
  EXPECT_EQ(quant.op_type(), "QuantizeLinear");
  EXPECT_EQ(quant.input(0), "x");
  const onnx::TensorProto& zero_point = initializer_named(qdq, "c1.input_quant.zero_point");
  EXPECT_EQ(zero_point.data_type(), onnx::TensorProto::UINT8);
  EXPECT_EQ(static_cast<uint8_t>(zero_point.raw_data()[0]), 131);  // offset_d 3 + 128
  EXPECT_EQ(tensor_to_floats(initializer_named(qdq, "c1.input_quant.scale"))[0], 0.02f);
  EXPECT_EQ(node_named(qdq, "c1").input(0), "c1.input_dequant.output0");

  const onnx::TensorProto& weight = initializer_named(qdq, "c1.weight");
  EXPECT_EQ(weight.data_type(), onnx::TensorProto::INT8);
  // round(w / scale_w[c]) with c the output channel (2 inputs per channel)
  EXPECT_EQ(int8_values(weight), (std::vector<int>{50, -25, 50, 5, -100, 30, 20, -20}));
  const onnx::NodeProto& weight_dequant = node_named(qdq, "c1.weight_dequant");
  EXPECT_EQ(get_int_attribute(weight_dequant, "axis", -1), 0);
  EXPECT_EQ(initializer_named(qdq, "c1.weight_dequant.zero_point").data_type(), onnx::TensorProto::INT8);
  EXPECT_EQ(dims_of(initializer_named(qdq, "c1.weight_dequant.scale")), (std::vector<int64_t>{4}));

  const onnx::TensorProto& bias = initializer_named(qdq, "c1.bias");
  EXPECT_EQ(bias.data_type(), onnx::TensorProto::INT32);
  const auto* b = reinterpret_cast<const int32_t*>(bias.raw_data().data());
  EXPECT_EQ(b[0], 500);   // 0.1 / (0.01 * 0.02)
  EXPECT_EQ(b[1], -500);  // -0.2 / (0.02 * 0.02)
  const auto bias_scales = tensor_to_floats(initializer_named(qdq, "c1.bias_dequant.scale"));
  EXPECT_FLOAT_EQ(bias_scales[1], 0.02f * 0.02f);

  // Gemm: per-tensor weight, transB kept.
  EXPECT_EQ(get_int_attribute(node_named(qdq, "fc"), "transB", 0), 1);
  EXPECT_EQ(find_attribute(node_named(qdq, "fc.weight_dequant"), "axis"), nullptr);
  EXPECT_EQ(dims_of(initializer_named(qdq, "fc.weight")), (std::vector<int64_t>{3, 128}));
  EXPECT_EQ(find_attribute(node_named(qdq, "c1"), "op_data_type"), nullptr);
}

TEST(QdqModel, ResultsFeedingQuantizedLayersAreRequantizedWithTheirFactors) {
  const onnx::ModelProto qdq = save_qdq(chain(), kChainRecord);
  // c1 -> Relu -> c2: c2's factors, so c2 quantizes the Relu output again on the same grid.
  EXPECT_EQ(node_named(qdq, "c1.output_quant").input(1), "c2.input_quant.scale");
  EXPECT_EQ(node_named(qdq, "c1.output_dequant").output(0), "c1_out");
  // c2 -> up directly: up reads c2's dequantized output, no second quantization.
  EXPECT_EQ(node_named(qdq, "c2.output_quant").input(1), "up.input_quant.scale");
  EXPECT_EQ(find_node(qdq.graph(), "up.input_quant"), nullptr);
  EXPECT_EQ(node_named(qdq, "up").input(0), "c2_out");
  // fc's result is the graph output: QGemm with a float output.
  EXPECT_EQ(find_node(qdq.graph(), "fc.output_quant"), nullptr);
  EXPECT_EQ(node_named(qdq, "fc").output(0), "y");
  // Inputs of c1, c2 (after the Relu) and fc (after the Flatten); outputs of c1, c2 and up.
  EXPECT_EQ(count_op(qdq, "QuantizeLinear"), 6u);
}

TEST(QdqModel, BlockUpsamplingDeconvolutionBecomesConvAndDepthToSpace) {
  const onnx::ModelProto qdq = save_qdq(chain(), kChainRecord);
  const onnx::NodeProto& up = node_named(qdq, "up");
  EXPECT_EQ(up.op_type(), "Conv");
  EXPECT_EQ(find_attribute(up, "strides"), nullptr);
  const onnx::NodeProto& depth_to_space = node_named(qdq, "up.depth_to_space");
  EXPECT_EQ(get_int_attribute(depth_to_space, "blocksize", 0), 2);
  EXPECT_EQ(get_string_attribute(depth_to_space, "mode", ""), "CRD");
  EXPECT_EQ(depth_to_space.output(0), "up_out");
  // Requantized before DepthToSpace with fc's factors (through Flatten).
  EXPECT_EQ(node_named(qdq, "up.output_quant").input(0), "up.output");
  EXPECT_EQ(node_named(qdq, "up.output_quant").input(1), "fc.input_quant.scale");
  // W'[(co * 2 + a) * 2 + b, ci] = W[ci, co, a, b]; W[ci, co, a, b] = (ci * 8 + co * 4 + a * 2 + b) / 32,
  // scale_w[co] = 0.001 * (co + 1).
  const onnx::TensorProto& weight = initializer_named(qdq, "up.weight");
  EXPECT_EQ(dims_of(weight), (std::vector<int64_t>{8, 4, 1, 1}));
  const std::vector<int> q = int8_values(weight);
  EXPECT_EQ(q[0 * 4 + 1], 127);                     // W[1,0,0,0] = 8/32 / 0.001 -> clamped
  EXPECT_EQ(q[5 * 4 + 0], static_cast<int>(std::nearbyint((5.0f / 32.0f) / 0.002f)));  // W[0,1,0,1]
  EXPECT_EQ(dims_of(initializer_named(qdq, "up.weight_dequant.scale")), (std::vector<int64_t>{8}));
  EXPECT_EQ(dims_of(initializer_named(qdq, "up.bias")), (std::vector<int64_t>{8}));
}

TEST(QdqModel, ConvWithoutConsumerFactorsBecomesConvInteger) {
  ModelBuilder b;
  b.input("x", {-1, 1, 2, 2}).output("y", {-1, 2, 2, 2});
  b.initializer("c.weight", {2, 1, 1, 1}, {0.5f, -0.3f});
  b.initializer("c.bias", {2}, {0.01f, 0.02f});
  b.layer("Conv", "c", {"x", "c.weight", "c.bias"}, "y");
  const onnx::ModelProto qdq = save_qdq(b, entry("c", "0.1", -2, {0.01f, 0.01f}));
  const onnx::NodeProto& conv = node_named(qdq, "c");
  EXPECT_EQ(conv.op_type(), "ConvInteger");
  ASSERT_EQ(conv.input_size(), 4);
  EXPECT_EQ(conv.input(0), "c.input_quant.output0");
  EXPECT_EQ(conv.input(2), "c.input_quant.zero_point");
  const onnx::TensorProto& weight = initializer_named(qdq, "c.weight");
  EXPECT_EQ(weight.data_type(), onnx::TensorProto::UINT8);
  EXPECT_EQ(static_cast<uint8_t>(weight.raw_data()[0]), 50 + 128);
  EXPECT_EQ(static_cast<uint8_t>(weight.raw_data()[1]), 128 - 30);
  EXPECT_EQ(static_cast<uint8_t>(initializer_named(qdq, conv.input(3)).raw_data()[0]), 128);
  const onnx::TensorProto& bias = initializer_named(qdq, "c.bias");
  EXPECT_EQ(dims_of(bias), (std::vector<int64_t>{1, 2, 1, 1}));
  EXPECT_EQ(reinterpret_cast<const int32_t*>(bias.raw_data().data())[1], 20);  // 0.02 / (0.01 * 0.1)
  EXPECT_EQ(op_types(qdq), (std::vector<std::string>{"QuantizeLinear", "ConvInteger", "Add", "Cast", "Mul"}));
  EXPECT_EQ(node_named(qdq, "c.dequant").output(0), "y");
  EXPECT_FLOAT_EQ(tensor_to_floats(initializer_named(qdq, "c.dequant.scale"))[0], 0.001f);
}

// x -> c1 -> <between> -> c2 -> y, 1x1 convolutions with 2 channels.
ModelBuilder two_convs(const std::function<std::string(ModelBuilder&)>& between) {
  ModelBuilder b;
  b.input("x", {-1, 2, 3, 3}).output("y", {-1, 2, -1, -1});
  b.initializer("c1.weight", {2, 2, 1, 1}, {0.5f, -0.25f, 1.0f, 0.1f});
  b.initializer("c2.weight", {2, 2, 1, 1}, {0.2f, 0.3f, -0.4f, 0.5f});
  b.layer("Conv", "c1", {"x", "c1.weight"}, "c1_out");
  b.layer("Conv", "c2", {between(b), "c2.weight"}, "y");
  return b;
}

const std::string kTwoConvsRecord = entry("c1", "0.02", 3, {0.01f, 0.02f}) + entry("c2", "0.03", -128, {0.01f, 0.01f});

onnx::NodeProto& constant_node(ModelBuilder& b, const std::string& name, onnx::TensorProto value) {
  onnx::NodeProto& node = b.node("Constant", name, {}, {name + "_out"});
  auto* attribute = node.add_attribute();
  attribute->set_name("value");
  attribute->set_type(onnx::AttributeProto::TENSOR);
  *attribute->mutable_t() = std::move(value);
  return node;
}

// torch.onnx's ZeroPad2d: Pad(x, pads, 0.0) in constant mode, from Constant nodes.
std::string zero_pad(ModelBuilder& b, float value, const std::string& input = "c1_out") {
  onnx::TensorProto pads;
  pads.set_data_type(onnx::TensorProto::INT64);
  pads.add_dims(8);
  for (int64_t p : {0, 0, 0, 0, 0, 0, 1, 1}) pads.add_int64_data(p);
  constant_node(b, "pads", pads);
  constant_node(b, "fill", make_float_tensor("", {}, std::vector<float>{value}));
  b.node("Pad", "pad", {input, "pads_out", "fill_out"}, {"pad_out"});
  return "pad_out";
}

uint8_t uint8_scalar(const onnx::ModelProto& model, const std::string& name) {
  const onnx::TensorProto& tensor = initializer_named(model, name);
  EXPECT_EQ(tensor.data_type(), onnx::TensorProto::UINT8) << name;
  EXPECT_EQ(tensor.dims_size(), 0) << name;
  return static_cast<uint8_t>(tensor.raw_data().at(0));
}

// torch.onnx's ReLU6: Clip(x, CastLike(Constant 0, x), CastLike(Constant 6, x)).
std::string relu6(ModelBuilder& b, const std::string& input) {
  for (const auto& [name, value] : {std::pair<std::string, float>{"min", 0.0f}, {"max", 6.0f}}) {
    set_float_attribute(b.node("Constant", name, {}, {name + "_val"}), "value_float", value);
    b.node("CastLike", name + "_cast", {name + "_val", input}, {name + "_cast_out"});
  }
  b.node("Clip", "relu6", {input, "min_cast_out", "max_cast_out"}, {"relu6_out"});
  return "relu6_out";
}

// Clip and Pad run on the UINT8 integers between c1's QuantizeLinear and
// DequantizeLinear (c2's factors), which ONNX Runtime fuses into the
// QLinearConv around them.
TEST(QdqModel, ClipBetweenLayersRunsOnTheQuantizedIntegers) {
  // c2: scale 0.03, zero point -28 + 128 = 100.
  const std::string record = entry("c1", "0.02", 3, {0.01f, 0.02f}) + entry("c2", "0.03", -28, {0.01f, 0.01f});
  const onnx::ModelProto qdq = save_qdq(two_convs([](ModelBuilder& b) { return relu6(b, "c1_out"); }), record);
  EXPECT_EQ(node_named(qdq, "c1").op_type(), "Conv");
  const onnx::NodeProto& quant = node_named(qdq, "c1.output_quant");
  EXPECT_EQ(quant.input(0), "c1.output");
  EXPECT_EQ(quant.input(1), "c2.input_quant.scale");
  const onnx::NodeProto& clip = node_named(qdq, "relu6");
  EXPECT_EQ(clip.input(0), "c1.output_quant.output0");
  ASSERT_EQ(clip.input_size(), 3);
  EXPECT_EQ(uint8_scalar(qdq, clip.input(1)), 100);  // q(0) = zero point
  EXPECT_EQ(uint8_scalar(qdq, clip.input(2)), 255);  // q(6) = 200 + 100, clamped
  const onnx::NodeProto& dequant = node_named(qdq, "c1.output_dequant");
  EXPECT_EQ(dequant.input(0), clip.output(0));
  EXPECT_EQ(dequant.input(1), "c2.input_quant.scale");
  EXPECT_EQ(dequant.output(0), "relu6_out");
  // The float bounds are gone; c2 (into the graph output) reads the integers.
  EXPECT_EQ(count_op(qdq, "CastLike"), 0u);
  EXPECT_EQ(count_op(qdq, "Constant"), 0u);
  EXPECT_EQ(node_named(qdq, "c2").op_type(), "ConvInteger");
  EXPECT_EQ(node_named(qdq, "c2").input(0), clip.output(0));
  EXPECT_EQ(count_op(qdq, "QuantizeLinear"), 2u);  // c1's input and output

  // Clip bounds computed from the data are not constants: ConvInteger.
  const auto dynamic_clip = [](ModelBuilder& b) {
    b.node("ReduceMin", "lowest", {"x"}, {"lowest_out"});
    b.node("Clip", "clip", {"c1_out", "lowest_out"}, {"clip_out"});
    return std::string("clip_out");
  };
  const onnx::ModelProto dynamic = save_qdq(two_convs(dynamic_clip), kTwoConvsRecord);
  EXPECT_EQ(find_node(dynamic.graph(), "c1.output_quant"), nullptr);
  EXPECT_EQ(node_named(dynamic, "c1").op_type(), "ConvInteger");
}

TEST(QdqModel, ReluAndZeroPaddingBetweenLayersRunOnTheQuantizedIntegers) {
  // c1 -> Relu -> Pad(0) -> Shape-free chain -> c2; c2's zero point is 0 + 128.
  const std::string record = entry("c1", "0.02", 3, {0.01f, 0.02f}) + entry("c2", "0.03", 0, {0.01f, 0.01f});
  const auto relu_pad = [](ModelBuilder& b) {
    b.node("Relu", "relu", {"c1_out"}, {"relu_out"});
    b.node("Shape", "shape", {"relu_out"}, {"shape_out"});
    return zero_pad(b, 0.0f, "relu_out");
  };
  const onnx::ModelProto qdq = save_qdq(two_convs(relu_pad), record);
  EXPECT_EQ(node_named(qdq, "c1").op_type(), "Conv");
  // Relu has no UINT8 kernel: Clip(n, zero point) = q(relu(x)).
  const onnx::NodeProto& relu = node_named(qdq, "relu");
  EXPECT_EQ(relu.op_type(), "Clip");
  EXPECT_EQ(relu.input(0), "c1.output_quant.output0");
  ASSERT_EQ(relu.input_size(), 2);
  EXPECT_EQ(uint8_scalar(qdq, relu.input(1)), 128);
  EXPECT_EQ(node_named(qdq, "shape").input(0), relu.output(0));
  // Zero padding fills with the zero point.
  const onnx::NodeProto& pad = node_named(qdq, "pad");
  EXPECT_EQ(pad.input(0), relu.output(0));
  EXPECT_EQ(uint8_scalar(qdq, pad.input(2)), 128);
  EXPECT_EQ(find_node(qdq.graph(), "fill"), nullptr);  // the float fill, now unread
  EXPECT_NE(find_node(qdq.graph(), "pads"), nullptr);
  const onnx::NodeProto& dequant = node_named(qdq, "c1.output_dequant");
  EXPECT_EQ(dequant.input(0), pad.output(0));
  EXPECT_EQ(dequant.output(0), "pad_out");
  EXPECT_EQ(find_node(qdq.graph(), "c2.input_quant"), nullptr);
  EXPECT_EQ(node_named(qdq, "c2").input(0), pad.output(0));

  // A fill of 1 is off the grid in general: ConvInteger.
  const onnx::ModelProto ones = save_qdq(two_convs([](ModelBuilder& b) { return zero_pad(b, 1.0f); }), kTwoConvsRecord);
  EXPECT_EQ(find_node(ones.graph(), "c1.output_quant"), nullptr);
  EXPECT_EQ(node_named(ones, "c1").op_type(), "ConvInteger");
}

// Without Clip or Pad the chain stays float (ONNX Runtime fuses Relu itself).
TEST(QdqModel, ReluAloneStaysBetweenDequantizeAndQuantize) {
  const auto relu = [](ModelBuilder& b) {
    b.node("Relu", "relu", {"c1_out"}, {"relu_out"});
    return std::string("relu_out");
  };
  const onnx::ModelProto qdq = save_qdq(two_convs(relu), kTwoConvsRecord);
  EXPECT_EQ(node_named(qdq, "relu").op_type(), "Relu");
  EXPECT_EQ(node_named(qdq, "c1.output_dequant").output(0), "c1_out");
  EXPECT_EQ(node_named(qdq, "c2.input_quant").input(0), "relu_out");
}

// A branch before the Clip (one use into Clip, one into a float op) keeps
// the float Clip and the plain requantization.
TEST(QdqModel, BranchingChainKeepsTheFloatClip) {
  const auto branch = [](ModelBuilder& b) {
    const std::string out = relu6(b, "c1_out");
    b.node("Transpose", "t1", {out}, {"t1_out"});
    b.node("Transpose", "t2", {out}, {"t2_out"});
    b.node("Add", "sum", {"t1_out", "t2_out"}, {"sum_out"});
    return std::string("sum_out");
  };
  const onnx::ModelProto qdq = save_qdq(two_convs(branch), kTwoConvsRecord);
  EXPECT_EQ(find_node(qdq.graph(), "c1.output_quant"), nullptr);
  EXPECT_EQ(node_named(qdq, "relu6").input(0), "c1_out");
}

TEST(QdqModel, OlderOpsetIsConvertedUpForTheQdqModelOnly) {
  ModelBuilder b(12);
  b.input("x", {1, 1, 2, 2}).output("y", {});
  b.initializer("c.weight", {1, 1, 1, 1}, {0.5f});
  b.layer("Conv", "c", {"x", "c.weight"}, "y");
  const std::string dir = fresh_dir();
  save_onnx_model(b.model(), dir + "/modified.onnx");
  write_text(dir + "/record.txt", entry("c", "0.1", 0, {0.5f}));
  // The QDQ model goes up to opset 13; the AMCT outputs keep the model's 12.
  const SaveResult saved = save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/net");
  ASSERT_EQ(saved.written.size(), 3u);
  EXPECT_TRUE(saved.warnings.empty());
  EXPECT_EQ(load_onnx_model(saved.written[0]).opset_import(0).version(), 12);
  EXPECT_EQ(load_onnx_model(saved.written[1]).opset_import(0).version(), 12);
  const onnx::ModelProto qdq = load_onnx_model(saved.written[2]);
  EXPECT_EQ(qdq.opset_import(0).version(), 13);
  EXPECT_EQ(qdq.ir_version(), 7);

  // An opset that cannot hold it: an error when asked for, a warning otherwise.
  SaveOptions explicit_qdq;
  explicit_qdq.qdq_opset = 12;
  try {
    save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/again", explicit_qdq);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("modified.onnx': the QDQ model cannot be written at opset 12"),
              std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/again_deploy_model.onnx"));
  SaveOptions optional_qdq = explicit_qdq;
  optional_qdq.qdq_optional = true;
  const SaveResult skipped = save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/again", optional_qdq);
  EXPECT_EQ(skipped.written.size(), 2u);
  ASSERT_EQ(skipped.warnings.size(), 1u);
  EXPECT_NE(skipped.warnings[0].find("the QDQ model was skipped"), std::string::npos);
}

}  // namespace
}  // namespace amct::test
