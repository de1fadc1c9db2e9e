// save_model on convolution layers: exact deploy and fake-quant structure,
// integer weights/biases and packed dequant parameters.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "amct/calib/quant_math.h"
#include "save_test_support.h"

namespace amct::test {
namespace {

constexpr float kScaleD = 0.04908199f;
constexpr float kScaleW0 = 0.00073471636f;
constexpr float kScaleW1 = 0.0017440193f;

// x[N,2,3,3] -> Conv conv1 (W [2,2,1,1], bias [2]) -> graph output y.
ModelBuilder conv_feeding_output() {
  ModelBuilder b;
  b.input("x", {-1, 2, 3, 3}).output("y", {-1, 2, 3, 3});
  b.initializer("conv1.weight", {2, 2, 1, 1}, {5 * kScaleW0, -128 * kScaleW0, 127 * kScaleW1, -77 * kScaleW1});
  b.initializer("conv1.bias", {2}, {0.5f, -0.25f});
  b.layer("Conv", "conv1", {"x", "conv1.weight", "conv1.bias"}, "y");
  return b;
}

const std::string kConvRecord = record_entry("conv1",
                                             "    scale_d: 0.04908199\n    offset_d: 10\n"
                                             "    scale_w: 0.00073471636\n    scale_w: 0.0017440193\n"
                                             "    offset_w: 0\n    offset_w: 0\n"
                                             "    act_type: \"INT8\"\n    wts_type: \"INT8\"\n");

float deq(float scale_w) { return static_cast<float>(static_cast<double>(scale_w) * kScaleD); }

TEST(SaveModelDeploy, ConvPerChannelStructureAndValues) {
  const Saved saved = run_save(conv_feeding_output().model(), kConvRecord, fresh_dir());
  const auto& m = saved.deploy;
  EXPECT_EQ(node_names(m), (std::vector<std::string>{"conv1.quant", "conv1", "conv1.dequant"}));
  EXPECT_EQ(op_types(m), (std::vector<std::string>{"AscendQuant", "Conv", "AscendDequant"}));

  const auto& quant = node_named(m, "conv1.quant");
  EXPECT_EQ(quant.domain(), "");
  EXPECT_EQ(quant.input(0), "x");
  EXPECT_EQ(quant.output(0), "conv1.quant.output0");
  ASSERT_EQ(quant.attribute_size(), 3);
  EXPECT_EQ(find_attribute(quant, "scale")->type(), onnx::AttributeProto::FLOAT);
  EXPECT_EQ(find_attribute(quant, "scale")->f(), 20.374073f);  // docs/amct-reference.md#bit-exact-arithmetic
  EXPECT_EQ(find_attribute(quant, "offset")->f(), 10.0f);
  EXPECT_EQ(find_attribute(quant, "dst_type")->s(), "INT8");

  const auto& conv = node_named(m, "conv1");
  EXPECT_EQ(conv.input(0), "conv1.quant.output0");
  EXPECT_EQ(conv.output(0), "conv1_output0");  // the graph output moved to the dequant
  EXPECT_EQ(find_attribute(conv, "op_data_type"), nullptr);

  const auto& dequant = node_named(m, "conv1.dequant");
  EXPECT_EQ(std::vector<std::string>(dequant.input().begin(), dequant.input().end()),
            (std::vector<std::string>{"conv1_output0", "conv1.dequant.param"}));
  EXPECT_EQ(dequant.output(0), "y");
  ASSERT_EQ(dequant.attribute_size(), 1);
  EXPECT_EQ(find_attribute(dequant, "dtype")->type(), onnx::AttributeProto::INT);
  EXPECT_EQ(find_attribute(dequant, "dtype")->i(), 0);

  const auto& param = initializer_named(m, "conv1.dequant.param");
  EXPECT_EQ(param.data_type(), onnx::TensorProto::UINT64);
  EXPECT_EQ(dims_of(param), (std::vector<int64_t>{2}));
  ASSERT_EQ(param.uint64_data_size(), 2);
  EXPECT_EQ(param.uint64_data(0), 941047954u);  // docs/amct-reference.md#dequant-parameter-packing
  EXPECT_EQ(float_bits_to_value(static_cast<uint32_t>(param.uint64_data(1))), deq(kScaleW1));
  EXPECT_EQ(param.uint64_data(1) >> 32, 0u);

  const auto& weight = initializer_named(m, "conv1.weight");
  EXPECT_EQ(weight.data_type(), onnx::TensorProto::INT8);
  EXPECT_EQ(dims_of(weight), (std::vector<int64_t>{2, 2, 1, 1}));
  EXPECT_EQ(int8_values(weight), (std::vector<int>{5, -128, 127, -77}));

  const auto& bias = initializer_named(m, "conv1.bias");
  EXPECT_EQ(bias.data_type(), onnx::TensorProto::INT32);
  EXPECT_FALSE(bias.has_raw_data());
  ASSERT_EQ(bias.int32_data_size(), 2);
  EXPECT_EQ(bias.int32_data(0), static_cast<int32_t>(std::nearbyint(0.5 / deq(kScaleW0))));
  EXPECT_EQ(bias.int32_data(0), 13865);
  EXPECT_EQ(bias.int32_data(1), static_cast<int32_t>(std::nearbyint(-0.25 / deq(kScaleW1))));
}

TEST(SaveModelDeploy, KeepsModelHeaderAndDynamicInputs) {
  const Saved saved = run_save(conv_feeding_output().model(), kConvRecord, fresh_dir());
  for (const auto* m : {&saved.deploy, &saved.fake_quant}) {
    EXPECT_EQ(m->ir_version(), 8);
    ASSERT_EQ(m->opset_import_size(), 1);
    EXPECT_EQ(m->opset_import(0).version(), 18);
    ASSERT_EQ(m->graph().input_size(), 1);
    EXPECT_EQ(m->graph().input(0).name(), "x");
    EXPECT_EQ(m->graph().input(0).type().tensor_type().shape().dim(0).dim_param(), "batch");
    ASSERT_EQ(m->graph().output_size(), 1);
    EXPECT_EQ(m->graph().output(0).name(), "y");
  }
}

TEST(SaveModelFakeQuant, ConvPerChannelStructureAndValues) {
  const Saved saved = run_save(conv_feeding_output().model(), kConvRecord, fresh_dir());
  const auto& m = saved.fake_quant;
  const std::string p = "conv1.quant.fakequant.";
  const auto names = node_names(m);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()),
            (std::set<std::string>{p + "scale", p + "offset", p + "min_val", p + "max_val", p + "mul", p + "round",
                                   p + "add", p + "clip", p + "sub", "conv1", "conv1.fakedequant.dqscale",
                                   "conv1.fakedequant.mul"}));
  EXPECT_EQ(names.size(), 12u);

  EXPECT_EQ(node_named(m, p + "mul").op_type(), "Mul");
  EXPECT_EQ(node_named(m, p + "mul").input(0), "x");
  EXPECT_EQ(node_named(m, p + "round").op_type(), "Round");
  EXPECT_EQ(node_named(m, p + "add").op_type(), "Add");
  EXPECT_EQ(node_named(m, p + "clip").op_type(), "Clip");
  EXPECT_EQ(node_named(m, p + "clip").input_size(), 3);
  EXPECT_EQ(node_named(m, p + "sub").op_type(), "Sub");
  EXPECT_EQ(node_named(m, p + "sub").output(0), node_named(m, "conv1").input(0));
  const auto scalar = [&](const std::string& name) {
    const auto& t = constant_value(m, name);
    EXPECT_EQ(t.dims_size(), 0) << name;
    return tensor_to_floats(t).at(0);
  };
  EXPECT_EQ(scalar(p + "scale"), 20.374073f);
  EXPECT_EQ(scalar(p + "offset"), 10.0f);
  EXPECT_EQ(scalar(p + "min_val"), -128.0f);
  EXPECT_EQ(scalar(p + "max_val"), 127.0f);

  const auto& dqscale = constant_value(m, "conv1.fakedequant.dqscale");
  EXPECT_EQ(dims_of(dqscale), (std::vector<int64_t>{1, 2, 1, 1}));
  EXPECT_EQ(tensor_to_floats(dqscale), (std::vector<float>{deq(kScaleW0), deq(kScaleW1)}));
  EXPECT_EQ(node_named(m, "conv1.fakedequant.mul").output(0), "y");
  EXPECT_EQ(node_named(m, "conv1").output(0), "conv1_output0");

  const auto& weight = initializer_named(m, "conv1.weight");
  EXPECT_EQ(weight.data_type(), onnx::TensorProto::FLOAT);
  EXPECT_EQ(tensor_to_floats(weight), (std::vector<float>{5, -128, 127, -77}));
  const auto& bias = initializer_named(m, "conv1.bias");
  EXPECT_EQ(bias.data_type(), onnx::TensorProto::FLOAT);
  EXPECT_EQ(tensor_to_floats(bias)[0], 13865.0f);
  EXPECT_EQ(find_initializer(m.graph(), "conv1.dequant.param"), nullptr);
  for (const auto& n : m.graph().node()) EXPECT_EQ(find_attribute(n, "op_data_type"), nullptr) << n.name();
}

TEST(SaveModelDeploy, DepthwiseConvPerChannelFeedingRelu) {
  ModelBuilder b;
  b.input("x", {1, 3, 4, 4}).output("y", {1, 3, 3, 3});
  const std::vector<float> scales = {0.01f, 0.02f, 0.5f};
  std::vector<float> w;
  const std::vector<int> ints = {1, -2, 3, 127, -128, 0, 64, -64, 9, 10, 11, -12};
  for (size_t i = 0; i < ints.size(); ++i) w.push_back(static_cast<float>(ints[i]) * scales[i / 4]);
  b.initializer("dw.weight", {3, 1, 2, 2}, w);
  auto& conv = b.layer("Conv", "dw", {"x", "dw.weight"}, "dw_out");
  set_int_attribute(conv, "group", 3);
  b.node("Relu", "relu", {"dw_out"}, {"y"});
  const Saved saved = run_save(b.model(),
                               record_entry("dw",
                                            "    scale_d: 0.25\n    offset_d: -128\n"
                                            "    scale_w: 0.01\n    scale_w: 0.02\n    scale_w: 0.5\n"
                                            "    offset_w: 0\n    offset_w: 0\n    offset_w: 0\n"),
                               fresh_dir());
  EXPECT_EQ(node_names(saved.deploy), (std::vector<std::string>{"dw.quant", "dw", "dw.dequant", "relu"}));
  EXPECT_EQ(node_named(saved.deploy, "relu").input(0), "dw.dequant.output0");
  EXPECT_EQ(node_named(saved.deploy, "dw.dequant").input(0), "dw_out");
  EXPECT_EQ(int8_values(initializer_named(saved.deploy, "dw.weight")), ints);
  EXPECT_EQ(find_attribute(node_named(saved.deploy, "dw.quant"), "scale")->f(), 4.0f);
  EXPECT_EQ(find_attribute(node_named(saved.deploy, "dw.quant"), "offset")->f(), -128.0f);
  EXPECT_EQ(initializer_named(saved.deploy, "dw.dequant.param").uint64_data_size(), 3);
  EXPECT_EQ(dims_of(constant_value(saved.fake_quant, "dw.fakedequant.dqscale")), (std::vector<int64_t>{1, 3, 1, 1}));
}

TEST(SaveModelDeploy, Conv1dAndConv3dScaleShapes) {
  for (const int rank : {3, 5}) {
    SCOPED_TRACE(rank);
    ModelBuilder b;
    std::vector<int64_t> in_dims = {1, 1}, w_dims = {2, 1};
    for (int i = 2; i < rank; ++i) {
      in_dims.push_back(2);
      w_dims.push_back(1);
    }
    b.input("x", in_dims).output("y", {});
    b.initializer("c.weight", w_dims, {0.1f, -0.2f});
    b.layer("Conv", "c", {"x", "c.weight"}, "y");
    const Saved saved = run_save(b.model(),
                                 record_entry("c", "    scale_d: 0.5\n    offset_d: 0\n    scale_w: 0.1\n"
                                                   "    scale_w: 0.2\n    offset_w: 0\n    offset_w: 0\n"),
                                 fresh_dir());
    std::vector<int64_t> expected = {1, 2};
    expected.resize(static_cast<size_t>(rank), 1);
    EXPECT_EQ(dims_of(constant_value(saved.fake_quant, "c.fakedequant.dqscale")), expected);
    EXPECT_EQ(int8_values(initializer_named(saved.deploy, "c.weight")), (std::vector<int>{1, -1}));
  }
}

TEST(SaveModelDeploy, GroupedConvTransposePerOutputChannel) {
  // W [Cin=4, Cout/g=3, 1, 1] with group 2: Cout = 6; element (ci, j) belongs
  // to output channel (ci / 2) * 3 + j.
  ModelBuilder b;
  b.input("x", {1, 4, 2, 2}).output("y", {1, 6, 2, 2});
  std::vector<float> scales;
  for (int c = 0; c < 6; ++c) scales.push_back(0.01f * static_cast<float>(c + 1));
  std::vector<int> ints;
  std::vector<float> w;
  for (int ci = 0; ci < 4; ++ci)
    for (int j = 0; j < 3; ++j) {
      const int q = (ci * 3 + j) * 21 - 120;
      ints.push_back(q);
      w.push_back(static_cast<float>(q) * scales[static_cast<size_t>((ci / 2) * 3 + j)]);
    }
  b.initializer("deconv.weight", {4, 3, 1, 1}, w);
  b.initializer("deconv.bias", {6}, {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f});
  set_int_attribute(b.layer("ConvTranspose", "deconv", {"x", "deconv.weight", "deconv.bias"}, "y"), "group", 2);
  std::string fields = "    scale_d: 0.1\n    offset_d: 5\n";
  for (float s : scales) fields += "    scale_w: " + std::to_string(s) + "\n";
  for (int c = 0; c < 6; ++c) fields += "    offset_w: 0\n";
  const Saved saved = run_save(b.model(), record_entry("deconv", fields), fresh_dir());
  EXPECT_EQ(op_types(saved.deploy), (std::vector<std::string>{"AscendQuant", "ConvTranspose", "AscendDequant"}));
  const auto& weight = initializer_named(saved.deploy, "deconv.weight");
  EXPECT_EQ(dims_of(weight), (std::vector<int64_t>{4, 3, 1, 1}));
  EXPECT_EQ(int8_values(weight), ints);
  const auto& bias = initializer_named(saved.deploy, "deconv.bias");
  ASSERT_EQ(bias.int32_data_size(), 6);
  // float32(0.06 * 0.1) is the dequant scale of channel 5.
  EXPECT_EQ(bias.int32_data(5), static_cast<int32_t>(std::nearbyint(0.6f / static_cast<double>(
                                                                                static_cast<float>(0.06f * 0.1)))));
  EXPECT_EQ(initializer_named(saved.deploy, "deconv.dequant.param").uint64_data_size(), 6);
  EXPECT_EQ(dims_of(constant_value(saved.fake_quant, "deconv.fakedequant.dqscale")),
            (std::vector<int64_t>{1, 6, 1, 1}));
}

TEST(SaveModelDeploy, QuantFusionSharesOneQuantForIdenticalFactors) {
  ModelBuilder b;
  b.input("x", {1, 1, 2, 2}).output("ya", {}).output("yb", {}).output("yc", {});
  for (const char* name : {"a", "b", "c"}) b.initializer(std::string(name) + ".weight", {1, 1, 1, 1}, {0.5f});
  b.layer("Conv", "a", {"x", "a.weight"}, "ya");
  b.layer("Conv", "b", {"x", "b.weight"}, "yb");
  b.layer("Conv", "c", {"x", "c.weight"}, "yc");
  const std::string same = "    scale_d: 0.1\n    offset_d: 3\n    scale_w: 0.5\n    offset_w: 0\n";
  const std::string other = "    scale_d: 0.1\n    offset_d: 4\n    scale_w: 0.5\n    offset_w: 0\n";
  const Saved saved = run_save(b.model(), record_entry("a", same) + record_entry("b", same) + record_entry("c", other),
                               fresh_dir());
  EXPECT_NE(find_node(saved.deploy.graph(), "a.quant"), nullptr);
  EXPECT_EQ(find_node(saved.deploy.graph(), "b.quant"), nullptr);
  EXPECT_NE(find_node(saved.deploy.graph(), "c.quant"), nullptr);
  EXPECT_EQ(node_named(saved.deploy, "b").input(0), "a.quant.output0");
  EXPECT_EQ(node_named(saved.deploy, "c").input(0), "c.quant.output0");
  EXPECT_EQ(node_names(saved.deploy).size(), 8u);  // 2 quants, 3 convs, 3 dequants
}

TEST(SaveModelDeploy, LayersWithoutRecordStayFloat) {
  ModelBuilder b;
  b.input("x", {1, 1, 2, 2}).output("y", {});
  b.initializer("a.weight", {1, 1, 1, 1}, {0.5f});
  b.initializer("b.weight", {1, 1, 1, 1}, {0.3f});
  b.layer("Conv", "a", {"x", "a.weight"}, "t");
  b.layer("Conv", "b", {"t", "b.weight"}, "y");
  const Saved saved =
      run_save(b.model(), record_entry("a", "    scale_d: 0.1\n    offset_d: 0\n    scale_w: 0.5\n    offset_w: 0\n"),
               fresh_dir());
  EXPECT_EQ(node_names(saved.deploy), (std::vector<std::string>{"a.quant", "a", "a.dequant", "b"}));
  EXPECT_EQ(initializer_named(saved.deploy, "b.weight").data_type(), onnx::TensorProto::FLOAT);
  EXPECT_EQ(tensor_to_floats(initializer_named(saved.fake_quant, "b.weight")), (std::vector<float>{0.3f}));
  EXPECT_EQ(find_attribute(node_named(saved.deploy, "b"), "op_data_type"), nullptr);
}

TEST(SaveModelFakeQuant, Float16LayerCastsAroundIntegerArithmetic) {
  ModelBuilder b;
  b.input("x", {1, 1, 2, 2}).output("y", {});
  b.initializer("a.weight", {1, 1, 1, 1}, {0.5f});
  b.layer("Conv", "a", {"x", "a.weight"}, "y", "float16");
  const Saved saved =
      run_save(b.model(), record_entry("a", "    scale_d: 0.1\n    offset_d: 0\n    scale_w: 0.5\n    offset_w: 0\n"),
               fresh_dir());
  const auto& in_cast = node_named(saved.fake_quant, "a.quant.fakequant.cast");
  EXPECT_EQ(in_cast.op_type(), "Cast");
  EXPECT_EQ(find_attribute(in_cast, "to")->i(), onnx::TensorProto::FLOAT);
  EXPECT_EQ(node_named(saved.fake_quant, "a.quant.fakequant.mul").input(0), in_cast.output(0));
  const auto& out_cast = node_named(saved.fake_quant, "a.fakedequant.cast");
  EXPECT_EQ(find_attribute(out_cast, "to")->i(), onnx::TensorProto::FLOAT16);
  EXPECT_EQ(out_cast.output(0), "y");
  EXPECT_EQ(find_node(saved.deploy.graph(), "a.quant.fakequant.cast"), nullptr);
}

TEST(SaveModelDeploy, Int16ActivationsAndFp16DequantScale) {
  ModelBuilder b;
  b.input("x", {1, 1, 2, 2}).output("y", {});
  b.initializer("a.weight", {1, 1, 1, 1}, {0.5f});
  b.layer("Conv", "a", {"x", "a.weight"}, "y");
  const Saved saved = run_save(b.model(),
                               record_entry("a",
                                            "    scale_d: 0.00024927783\n    offset_d: 418\n    scale_w: 0.0039\n"
                                            "    offset_w: 0\n    act_type: \"INT16\"\n"
                                            "    fakequant_precision_mode: \"FORCE_FP16_QUANT\"\n"),
                               fresh_dir());
  EXPECT_EQ(find_attribute(node_named(saved.deploy, "a.quant"), "dst_type")->s(), "INT16");
  EXPECT_EQ(find_attribute(node_named(saved.deploy, "a.quant"), "offset")->f(), 418.0f);
  const uint64_t param = initializer_named(saved.deploy, "a.dequant.param").uint64_data(0);
  EXPECT_EQ(param & 0x1FFFu, 0u);
  EXPECT_NEAR(float_bits_to_value(static_cast<uint32_t>(param)), 0.0039 * 0.00024927783, 1e-9);
  EXPECT_EQ(tensor_to_floats(constant_value(saved.fake_quant, "a.quant.fakequant.min_val"))[0], -32768.0f);
  EXPECT_EQ(tensor_to_floats(constant_value(saved.fake_quant, "a.quant.fakequant.max_val"))[0], 32767.0f);
}

TEST(SaveModelDeploy, Int4ActivationsCastTheBias) {
  ModelBuilder b;
  b.input("x", {1, 1, 2, 2}).output("y", {});
  b.initializer("a.weight", {1, 1, 1, 1}, {0.5f});
  b.initializer("a.bias", {1}, {0.25f});
  b.layer("Conv", "a", {"x", "a.weight", "a.bias"}, "y");
  const Saved saved = run_save(b.model(),
                               record_entry("a",
                                            "    scale_d: 0.1\n    offset_d: 0\n    scale_w: 0.5\n    offset_w: 0\n"
                                            "    act_type: \"INT4\"\n"),
                               fresh_dir());
  const auto& cast = node_named(saved.deploy, "a.bias_quant");
  EXPECT_EQ(cast.input(0), "a.bias");
  EXPECT_EQ(node_named(saved.deploy, "a").input(2), cast.output(0));
  EXPECT_EQ(find_attribute(node_named(saved.deploy, "a.quant"), "dst_type")->s(), "INT4");
  EXPECT_EQ(find_node(saved.fake_quant.graph(), "a.bias_quant"), nullptr);
  EXPECT_EQ(node_named(saved.fake_quant, "a").input(2), "a.bias");
  EXPECT_EQ(tensor_to_floats(initializer_named(saved.fake_quant, "a.bias")), (std::vector<float>{5.0f}));
  EXPECT_EQ(tensor_to_floats(constant_value(saved.fake_quant, "a.quant.fakequant.min_val"))[0], -8.0f);
}

}  // namespace
}  // namespace amct::test
