#include <gtest/gtest.h>

#include <cmath>

#include "amct/error.h"
#include "amct/model_prep.h"
#include "amct/onnx_graph.h"
#include "amct/quantize.h"

namespace amct {
namespace {

onnx::NodeProto& add_node(onnx::GraphProto& g, const std::string& op, const std::string& name,
                          std::vector<std::string> inputs, std::vector<std::string> outputs,
                          const std::string& scopes = "") {
  auto* n = g.add_node();
  n->set_op_type(op);
  n->set_name(name);
  for (auto& i : inputs) n->add_input(i);
  for (auto& o : outputs) n->add_output(o);
  if (!scopes.empty()) {
    auto* p = n->add_metadata_props();
    p->set_key("pkg.torch.onnx.name_scopes");
    p->set_value(scopes);
  }
  return *n;
}

void add_init(onnx::GraphProto& g, const std::string& name, std::vector<int64_t> dims, std::vector<float> values) {
  *g.add_initializer() = make_float_tensor(name, dims, values);
}

ModuleInfo module(const std::string& name, const std::string& type) {
  ModuleInfo m;
  m.name = name;
  m.type = type;
  m.layer_type = is_quantizable_type(type) ? type : "";
  m.padding_mode = "zeros";
  m.has_weight = type != "BatchNorm2d" && type != "ReLU";
  m.weight_id = static_cast<int64_t>(std::hash<std::string>{}(name));
  return m;
}

TEST(ModelPrep, NamesNodesAfterModulesAndMarksReuse) {
  onnx::GraphProto g;
  add_node(g, "Conv", "node_conv2d", {"x", "w"}, {"a"}, "['', 'features', 'features.0', 'conv2d']");
  add_node(g, "Relu", "node_relu", {"a"}, {"b"}, "['', 'features', 'features.1', 'relu']");
  add_node(g, "Conv", "node_conv2d_1", {"b", "w2"}, {"c"}, "['', 'shared', 'conv2d_1']");
  add_node(g, "Mul", "node_mul", {"c", "c"}, {"d"}, "['', 'mul']");
  add_node(g, "Conv", "node_conv2d_2", {"d", "w2"}, {"e"}, "['', 'shared', 'conv2d_2']");
  std::vector<ModuleInfo> modules = {module("", "Net"), module("features", "Sequential"),
                                     module("features.0", "Conv2d"), module("features.1", "ReLU"),
                                     module("shared", "Conv2d"), module("shared1", "Conv2d")};
  const auto reused = name_nodes_by_module(g, modules);
  EXPECT_EQ(reused, std::set<std::string>({"shared"}));
  EXPECT_EQ(g.node(0).name(), "features.0");
  EXPECT_EQ(g.node(1).name(), "features.1");
  EXPECT_EQ(g.node(2).name(), "shared");
  EXPECT_EQ(g.node(3).name(), "node_mul");
  // The second call must not take the name of the module "shared1".
  EXPECT_NE(g.node(4).name(), "shared1");
  EXPECT_NE(g.node(4).name(), "shared");
}

TEST(ModelPrep, FoldsMatMulWeightTranspose) {
  onnx::GraphProto g;
  add_init(g, "fc.weight", {2, 3}, {1, 2, 3, 4, 5, 6});
  add_node(g, "Transpose", "t", {"fc.weight"}, {"wt"});
  add_node(g, "MatMul", "fc", {"x", "wt"}, {"y"});
  fold_weight_transposes(g);
  ASSERT_EQ(g.node_size(), 1);
  EXPECT_EQ(g.node(0).input(1), "fc.weight");
  const auto* w = find_initializer(g, "fc.weight");
  EXPECT_EQ(tensor_dims(*w), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(tensor_to_floats(*w), (std::vector<float>{1, 4, 2, 5, 3, 6}));
}

TEST(ModelPrep, MaterializesComputedBias) {
  onnx::GraphProto g;
  add_init(g, "w", {2, 1, 1, 1}, {1, 1});
  auto& shape = add_node(g, "Shape", "s", {"w"}, {"shape"});
  auto* end = shape.add_attribute();
  end->set_name("end");
  end->set_type(onnx::AttributeProto::INT);
  end->set_i(1);
  auto& half = add_node(g, "Constant", "c", {}, {"half"});
  auto* value = half.add_attribute();
  value->set_name("value");
  value->set_type(onnx::AttributeProto::TENSOR);
  *value->mutable_t() = make_float_tensor("", {}, std::vector<float>{0.5f});
  add_node(g, "Expand", "e", {"half", "shape"}, {"bias"});
  add_node(g, "Conv", "conv", {"x", "w", "bias"}, {"y"});
  g.add_output()->set_name("y");
  fold_constant_inputs(g);
  ASSERT_EQ(g.node_size(), 1);  // the constant sub-graph is gone
  const auto* bias = find_initializer(g, g.node(0).input(2));
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(tensor_to_floats(*bias), (std::vector<float>{0.5f, 0.5f}));
}

TEST(ConvBnFusion, FusesThroughIdentityConstants) {
  // A fresh BN: bias == running_mean == 0 and weight == running_var == 1; the
  // exporter may share identical constants through Identity nodes.
  onnx::GraphProto g;
  add_init(g, "conv.weight", {2, 1, 1, 1}, {2, -3});
  add_init(g, "zeros", {2}, {0, 0});
  add_init(g, "gamma", {2}, {2, 0.5f});
  add_init(g, "var", {2}, {4, 1});
  add_node(g, "Identity", "id0", {"zeros"}, {"beta"});
  add_node(g, "Identity", "id1", {"zeros"}, {"mean"});
  add_node(g, "Conv", "conv", {"x", "conv.weight"}, {"c"});
  auto& bn = add_node(g, "BatchNormalization", "bn", {"c", "gamma", "beta", "mean", "var"}, {"y"});
  auto* eps = bn.add_attribute();
  eps->set_name("epsilon");
  eps->set_type(onnx::AttributeProto::FLOAT);
  eps->set_f(0.0f);
  auto* out = g.add_output();
  out->set_name("y");
  ModelInfo info;
  info.modules = {module("conv", "Conv2d"), module("bn", "BatchNorm2d")};
  std::vector<std::string> notes;
  const auto fused = fuse_conv_batchnorm(g, info, {}, notes);
  ASSERT_EQ(fused.size(), 1u);
  EXPECT_EQ(fused[0].batchnorm, "bn");
  ASSERT_EQ(g.node_size(), 1);
  EXPECT_EQ(g.node(0).output(0), "y");
  EXPECT_EQ(tensor_to_floats(*find_initializer(g, "conv.weight")), (std::vector<float>{2.0f, -1.5f}));
  EXPECT_EQ(tensor_to_floats(*find_initializer(g, g.node(0).input(2))), (std::vector<float>{0.0f, 0.0f}));
  EXPECT_EQ(find_initializer(g, "gamma"), nullptr);
}

TEST(ConvBnFusion, SkipsTrainingModeWithANote) {
  onnx::GraphProto g;
  add_init(g, "w", {1, 1, 1, 1}, {1});
  add_init(g, "p", {1}, {1});
  add_node(g, "Conv", "conv", {"x", "w"}, {"c"});
  add_node(g, "BatchNormalization", "bn", {"c", "p", "p", "p", "p"}, {"y"});
  g.add_output()->set_name("y");
  ModelInfo info;
  info.modules = {module("conv", "Conv2d"), module("bn", "BatchNorm2d")};
  info.modules[1].training = true;
  std::vector<std::string> notes;
  EXPECT_TRUE(fuse_conv_batchnorm(g, info, {}, notes).empty());
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("training mode"), std::string::npos);
  EXPECT_EQ(g.node_size(), 2);
}

TEST(ModelPrep, RefusesModelsWithQuantizationModules) {
  std::vector<ModuleInfo> modules = {module("", "Net"), module("conv", "CalibrationWrapper")};
  try {
    check_no_quantization_modules(modules);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("conv: CalibrationWrapper"), std::string::npos);
  }
}

}  // namespace
}  // namespace amct

namespace amct {
namespace {

void set_fx_node(onnx::NodeProto& node, const std::string& target) {
  auto* p = node.add_metadata_props();
  p->set_key("pkg.torch.onnx.fx_node");
  p->set_value("%x : [num_users=1] = call_function[target=torch.ops." + target + "](args = (%a, %p_w), kwargs = {})");
}

TEST(WeightReaders, NamesTheLinearOpThatReadsAnUncalledModulesWeight) {
  onnx::GraphProto g;
  add_init(g, "attn.qkv.weight", {6, 2}, std::vector<float>(12, 0.5f));
  auto& gemm = add_node(g, "Gemm", "node_linear", {"x", "attn.qkv.weight"}, {"y"}, "['', 'attn', 'linear']");
  set_fx_node(gemm, "aten.linear.default");
  std::vector<ModuleInfo> modules = {module("attn", "Attention"), module("attn.qkv", "Linear")};
  const WeightReaders readers = name_weight_readers(g, modules);
  EXPECT_EQ(readers.named, std::set<std::string>({"attn.qkv"}));
  EXPECT_TRUE(readers.problems.empty());
  EXPECT_EQ(g.node(0).name(), "attn.qkv");
}

TEST(WeightReaders, KeepsAMatMulOnATransposedWeightWithTheExactReason) {
  onnx::GraphProto g;
  add_init(g, "t.weight", {2, 2}, {1, 2, 3, 4});
  auto& matmul = add_node(g, "MatMul", "node_matmul", {"x", "t.weight"}, {"y"}, "['', 'matmul']");
  set_fx_node(matmul, "aten.matmul.default");
  const WeightReaders readers = name_weight_readers(g, {module("", "Net"), module("t", "Linear")});
  EXPECT_TRUE(readers.named.empty());
  EXPECT_EQ(readers.problems.at("t"),
            "forward() does not call the module; node 'node_matmul' (MatMul) comes from aten.matmul, not from "
            "Linear's own op aten.linear (F.linear); a layer used through its weight is quantized only when its "
            "class's own op reads the weight parameter itself");
  EXPECT_EQ(g.node(0).name(), "node_matmul");
}

TEST(WeightReaders, AWeightReadTwiceOrWithoutExporterMetadataStaysUnnamed) {
  onnx::GraphProto g;
  add_init(g, "a.weight", {2, 2}, {1, 2, 3, 4});
  add_init(g, "b.weight", {1, 2, 3, 3}, std::vector<float>(18, 1.0f));
  add_node(g, "Gemm", "g1", {"x", "a.weight"}, {"y1"});
  add_node(g, "Gemm", "g2", {"x", "a.weight"}, {"y2"});
  add_node(g, "Conv", "c", {"z", "b.weight"}, {"y3"});
  const WeightReaders readers =
      name_weight_readers(g, {module("", "Net"), module("a", "Linear"), module("b", "Conv2d")});
  EXPECT_TRUE(readers.named.empty());
  EXPECT_EQ(readers.problems.at("a"),
            "forward() does not call the module; its weight is read by 2 nodes ('g1' (Gemm), 'g2' (Gemm)), and a "
            "layer used through its weight is quantized only when one op reads it");
  EXPECT_NE(readers.problems.at("b").find("node 'c' (Conv) has no record of the torch op it comes from"),
            std::string::npos);
}

TEST(WeightReaders, SubclassOpMustReadTheWeightParameterItself) {
  onnx::GraphProto g;
  auto& conv = add_node(g, "Conv", "conv", {"x", "conv.weight_1"}, {"y"});
  set_fx_node(conv, "aten.conv2d.default");
  ModuleInfo m = module("conv", "StandardizedConv");
  m.layer_type = "Conv2d";
  EXPECT_EQ(standard_op_problem(conv, m),
            "node 'conv' (Conv) reads 'conv.weight_1' as its weight, not the module's weight parameter "
            "'conv.weight' itself: a weight that is sliced, transposed or computed on before the op is not "
            "quantized");
  conv.set_input(1, "conv.weight");
  EXPECT_EQ(standard_op_problem(conv, m), "");
}

}  // namespace
}  // namespace amct
