#include "amct/opset_conversion.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "amct/error.h"
#include "amct/onnx_graph.h"

namespace amct {
namespace {

// A model at `opset` with graph input "x" (float, `shape`) and output "y".
onnx::ModelProto make_model(int64_t opset, const std::vector<int64_t>& shape = {2, 3, 4, 5}) {
  onnx::ModelProto m;
  m.set_ir_version(10);
  auto* o = m.add_opset_import();
  o->set_domain("");
  o->set_version(opset);
  auto* g = m.mutable_graph();
  g->set_name("g");
  auto* in = g->add_input();
  in->set_name("x");
  in->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  for (auto d : shape) in->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(d);
  g->add_output()->set_name("y");
  return m;
}

onnx::NodeProto& add(onnx::ModelProto& m, const std::string& op, const std::string& name,
                     const std::vector<std::string>& inputs, const std::vector<std::string>& outputs) {
  auto* n = m.mutable_graph()->add_node();
  n->set_op_type(op);
  n->set_name(name);
  for (const auto& i : inputs) n->add_input(i);
  for (const auto& o : outputs) n->add_output(o);
  return *n;
}

void add_ints(onnx::ModelProto& m, const std::string& name, const std::vector<int64_t>& values) {
  auto* t = m.mutable_graph()->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::INT64);
  t->add_dims(static_cast<int64_t>(values.size()));
  for (auto v : values) t->add_int64_data(v);
}

void add_value_info(onnx::ModelProto& m, const std::string& name, const std::vector<int64_t>& shape) {
  auto* vi = m.mutable_graph()->add_value_info();
  vi->set_name(name);
  vi->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  for (auto d : shape) vi->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(d);
}

std::vector<std::string> op_types(const onnx::ModelProto& m) {
  std::vector<std::string> ops;
  for (const auto& n : m.graph().node()) ops.push_back(n.op_type());
  return ops;
}

std::vector<std::string> inputs_of(const onnx::NodeProto& n) { return {n.input().begin(), n.input().end()}; }

std::vector<int64_t> initializer_ints(const onnx::ModelProto& m, const std::string& name) {
  const auto* t = find_initializer(m.graph(), name);
  if (!t) return {};
  return {t->int64_data().begin(), t->int64_data().end()};
}

float initializer_float(const onnx::ModelProto& m, const std::string& name) {
  const auto* t = find_initializer(m.graph(), name);
  return t ? tensor_to_floats(*t).at(0) : std::nanf("");
}

// The message of the amct::Error that converting throws ("" if none).
std::string conversion_error(onnx::ModelProto m, int64_t target) {
  try {
    convert_opset(m, target);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.what();
  }
  return "";
}

TEST(OpsetConversion, DeclaresTargetOpsetAndIrVersion) {
  const std::vector<std::pair<int64_t, int64_t>> expected{{11, 6}, {12, 7}, {14, 7}, {15, 8}, {18, 8},
                                                          {19, 9}, {20, 9}, {21, 10}};
  for (const auto& [target, ir] : expected) {
    auto m = make_model(20);
    auto* other = m.add_opset_import();
    other->set_domain("com.microsoft");
    other->set_version(1);
    add(m, "Relu", "relu", {"x"}, {"y"});
    convert_opset(m, target);
    EXPECT_EQ(default_opset(m), target);
    EXPECT_EQ(m.ir_version(), ir);
    ASSERT_EQ(m.opset_import_size(), 2);
    EXPECT_EQ(m.opset_import(1).version(), 1);
    EXPECT_EQ(op_types(m), std::vector<std::string>{"Relu"});
  }
}

TEST(OpsetConversion, RejectsOpsetsOutsideElevenToTwentyOne) {
  auto m = make_model(20);
  EXPECT_NE(conversion_error(m, 10).find("cannot convert to opset 10"), std::string::npos);
  EXPECT_NE(conversion_error(make_model(22), 11).find("model of opset 22"), std::string::npos);
  EXPECT_EQ(default_opset(onnx::ModelProto()), 0);
}

TEST(OpsetConversion, ReduceMeanAxesInputBecomesAttribute) {
  auto m = make_model(20);
  add_ints(m, "axes", {2, 3});
  auto& n = add(m, "ReduceMean", "mean", {"x", "axes"}, {"y"});
  set_int_attribute(n, "keepdims", 1);
  set_int_attribute(n, "noop_with_empty_axes", 0);
  convert_opset(m, 17);
  const auto& r = m.graph().node(0);
  EXPECT_EQ(r.name(), "mean");
  EXPECT_EQ(inputs_of(r), std::vector<std::string>{"x"});
  EXPECT_EQ(get_ints_attribute(r, "axes"), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(get_int_attribute(r, "keepdims", 0), 1);
  EXPECT_EQ(find_attribute(r, "noop_with_empty_axes"), nullptr);
  // The axes initializer fed nothing else and is gone.
  EXPECT_EQ(find_initializer(m.graph(), "axes"), nullptr);
}

TEST(OpsetConversion, ReduceWithoutAxesAndNoopBecomesIdentity) {
  auto m = make_model(18);
  set_int_attribute(add(m, "ReduceMax", "max", {"x"}, {"y"}), "noop_with_empty_axes", 1);
  convert_opset(m, 11);
  EXPECT_EQ(op_types(m), std::vector<std::string>{"Identity"});
  EXPECT_EQ(m.graph().node(0).name(), "max");
  EXPECT_EQ(m.graph().node(0).attribute_size(), 0);
}

TEST(OpsetConversion, ReduceSumComputedAxesNeedOpset13) {
  auto m = make_model(13);
  add(m, "Shape", "shape", {"x"}, {"s"});
  add(m, "ReduceSum", "sum", {"x", "s"}, {"y"});
  const std::string error = conversion_error(m, 12);
  EXPECT_NE(error.find("node 'sum' (op ReduceSum)"), std::string::npos) << error;
  EXPECT_NE(error.find("lowest opset that works is 13"), std::string::npos) << error;
}

TEST(OpsetConversion, ReduceAxesAttributeBecomesInputGoingUp) {
  auto m = make_model(11);
  set_ints_attribute(add(m, "ReduceSum", "sum", {"x"}, {"s"}), "axes", {1});
  set_ints_attribute(add(m, "ReduceMean", "mean", {"s"}, {"y"}), "axes", {-1});
  convert_opset(m, 18);
  const auto& sum = m.graph().node(0);
  ASSERT_EQ(sum.input_size(), 2);
  EXPECT_EQ(find_attribute(sum, "axes"), nullptr);
  EXPECT_EQ(initializer_ints(m, sum.input(1)), std::vector<int64_t>{1});
  const auto& mean = m.graph().node(1);
  ASSERT_EQ(mean.input_size(), 2);
  EXPECT_EQ(initializer_ints(m, mean.input(1)), std::vector<int64_t>{-1});
  // At 13 only ReduceSum takes its axes as an input.
  auto m13 = make_model(11);
  set_ints_attribute(add(m13, "ReduceMean", "mean", {"x"}, {"y"}), "axes", {-1});
  convert_opset(m13, 13);
  EXPECT_EQ(get_ints_attribute(m13.graph().node(0), "axes"), std::vector<int64_t>{-1});
}

TEST(OpsetConversion, SqueezeAndUnsqueezeAxesBothWays) {
  auto m = make_model(20);
  auto& c = add(m, "Constant", "axes_const", {}, {"axes"});
  set_ints_attribute(c, "value_ints", {0});
  add(m, "Unsqueeze", "unsq", {"x", "axes"}, {"u"});
  add(m, "Squeeze", "sq", {"u", "axes"}, {"y"});
  convert_opset(m, 11);
  // The Constant node fed only the axes and is removed.
  EXPECT_EQ(op_types(m), (std::vector<std::string>{"Unsqueeze", "Squeeze"}));
  EXPECT_EQ(get_ints_attribute(m.graph().node(0), "axes"), std::vector<int64_t>{0});
  EXPECT_EQ(get_ints_attribute(m.graph().node(1), "axes"), std::vector<int64_t>{0});
  EXPECT_EQ(m.graph().node(1).input_size(), 1);
  convert_opset(m, 13);
  for (const auto& n : m.graph().node()) {
    ASSERT_EQ(n.input_size(), 2);
    EXPECT_EQ(n.input(1), n.name() + ".axes");
    EXPECT_EQ(initializer_ints(m, n.input(1)), std::vector<int64_t>{0});
    EXPECT_EQ(n.attribute_size(), 0);
  }
}

TEST(OpsetConversion, AxesFromAConstantRangeBecomeAnAttribute) {
  // torch's GroupNorm: Unsqueeze axes = Range(1, 4 - 1, 1).
  auto m = make_model(20);
  auto scalar = [&](const std::string& name, int64_t v) {
    auto* t = m.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_int64_data(v);
  };
  scalar("one", 1);
  scalar("four", 4);
  add(m, "Sub", "rank_minus_one", {"four", "one"}, {"limit"});
  add(m, "Range", "range", {"one", "limit", "one"}, {"axes"});
  add(m, "Unsqueeze", "unsq", {"x", "axes"}, {"y"});
  convert_opset(m, 11);
  EXPECT_EQ(get_ints_attribute(m.graph().node(2), "axes"), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(m.graph().node(2).input_size(), 1);
}

TEST(OpsetConversion, SplitNumOutputsSpelledOutWhenUneven) {
  auto m = make_model(18, {10, 3});
  auto& s = add(m, "Split", "split", {"x"}, {"a", "b", "c", "d"});
  set_int_attribute(s, "num_outputs", 4);
  set_int_attribute(s, "axis", 0);
  convert_opset(m, 11);
  const auto& r = m.graph().node(0);
  EXPECT_EQ(r.input_size(), 1);
  EXPECT_EQ(find_attribute(r, "num_outputs"), nullptr);
  EXPECT_EQ(get_ints_attribute(r, "split"), (std::vector<int64_t>{3, 3, 3, 1}));
  // An even split needs no sizes.
  auto even = make_model(18, {8, 3});
  set_int_attribute(add(even, "Split", "split", {"x"}, {"a", "b"}), "num_outputs", 2);
  convert_opset(even, 13);
  EXPECT_EQ(even.graph().node(0).attribute_size(), 0);
  EXPECT_EQ(even.graph().node(0).input_size(), 1);
}

TEST(OpsetConversion, SplitGoingUpTakesSizesAsInputOrNumOutputs) {
  auto m = make_model(11, {10, 3});
  set_ints_attribute(add(m, "Split", "sized", {"x"}, {"a", "b"}), "split", {4, 6});
  add(m, "Split", "even", {"x"}, {"c", "d"});
  convert_opset(m, 18);
  const auto& sized = m.graph().node(0);
  ASSERT_EQ(sized.input_size(), 2);
  EXPECT_EQ(initializer_ints(m, sized.input(1)), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(find_attribute(sized, "num_outputs"), nullptr);
  EXPECT_EQ(get_int_attribute(m.graph().node(1), "num_outputs", 0), 2);
}

TEST(OpsetConversion, SoftmaxOverLastAxisKeepsOneNode) {
  auto m = make_model(13);
  add(m, "Softmax", "sm", {"x"}, {"y"});
  set_int_attribute(add(m, "LogSoftmax", "lsm", {"x"}, {"z"}), "axis", 3);
  convert_opset(m, 11);
  EXPECT_EQ(op_types(m), (std::vector<std::string>{"Softmax", "LogSoftmax"}));
  // Opset 11 defaults to axis 1, so the axis is written out.
  EXPECT_EQ(get_int_attribute(m.graph().node(0), "axis", 99), -1);
  EXPECT_EQ(get_int_attribute(m.graph().node(1), "axis", 99), -1);
}

TEST(OpsetConversion, SoftmaxOverInnerAxisIsWrappedInTransposes) {
  auto m = make_model(13);
  set_int_attribute(add(m, "Softmax", "sm", {"x"}, {"y"}), "axis", 1);
  convert_opset(m, 11);
  ASSERT_EQ(op_types(m), (std::vector<std::string>{"Transpose", "Softmax", "Transpose"}));
  const auto& in = m.graph().node(0);
  const auto& sm = m.graph().node(1);
  const auto& out = m.graph().node(2);
  EXPECT_EQ(in.name(), "sm.transpose_in");
  EXPECT_EQ(sm.name(), "sm");
  EXPECT_EQ(out.name(), "sm.transpose_out");
  EXPECT_EQ(get_ints_attribute(in, "perm"), (std::vector<int64_t>{0, 3, 2, 1}));
  EXPECT_EQ(get_ints_attribute(out, "perm"), (std::vector<int64_t>{0, 3, 2, 1}));
  EXPECT_EQ(sm.input(0), in.output(0));
  EXPECT_EQ(out.input(0), sm.output(0));
  EXPECT_EQ(out.output(0), "y");
  EXPECT_EQ(get_int_attribute(sm, "axis", 99), -1);
}

TEST(OpsetConversion, SoftmaxOverInnerAxisOfUnknownRankIsRefused) {
  auto m = make_model(13);
  add(m, "Relu", "relu", {"x"}, {"r"});
  set_int_attribute(add(m, "Hardmax", "hm", {"r"}, {"y"}), "axis", 1);
  const std::string error = conversion_error(m, 12);
  EXPECT_NE(error.find("node 'hm' (op Hardmax)"), std::string::npos) << error;
  EXPECT_NE(error.find("unknown rank"), std::string::npos) << error;
  EXPECT_NE(error.find("lowest opset that works is 13"), std::string::npos) << error;
}

TEST(OpsetConversion, SoftmaxGoingUpFlattensAtTheOldAxis) {
  auto m = make_model(11);
  add(m, "Softmax", "sm", {"x"}, {"y"});  // axis 1 by default at opset 11
  convert_opset(m, 14);
  ASSERT_EQ(op_types(m), (std::vector<std::string>{"Shape", "Flatten", "Softmax", "Reshape"}));
  const auto& g = m.graph();
  EXPECT_EQ(g.node(1).input(0), "x");
  EXPECT_EQ(get_int_attribute(g.node(1), "axis", 0), 1);
  EXPECT_EQ(g.node(2).name(), "sm");
  EXPECT_EQ(get_int_attribute(g.node(2), "axis", 0), 1);
  EXPECT_EQ(inputs_of(g.node(3)), (std::vector<std::string>{g.node(2).output(0), g.node(0).output(0)}));
  EXPECT_EQ(g.node(3).output(0), "y");
  EXPECT_EQ(get_int_attribute(g.node(3), "allowzero", 0), 1);
}

TEST(OpsetConversion, LayerNormalizationDecomposes) {
  auto m = make_model(20);
  *m.mutable_graph()->add_initializer() = make_float_tensor("w", {5}, std::vector<float>(5, 1.0f));
  *m.mutable_graph()->add_initializer() = make_float_tensor("b", {5}, std::vector<float>(5, 0.0f));
  auto& ln = add(m, "LayerNormalization", "ln", {"x", "w", "b"}, {"y"});
  set_float_attribute(ln, "epsilon", 1e-3f);
  auto* scope = ln.add_metadata_props();
  scope->set_key("namespace");
  const std::string namespace_value =
      ": Net/norm: torch.nn.modules.normalization.LayerNorm/layer_norm: aten.layer_norm.default";
  scope->set_value(namespace_value);
  convert_opset(m, 11);
  // The shape ONNX Runtime's LayerNormFusion recognises (Pow, not Mul).
  ASSERT_EQ(op_types(m), (std::vector<std::string>{"ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div",
                                                   "Mul", "Add"}));
  EXPECT_FLOAT_EQ(initializer_float(m, m.graph().node(2).input(1)), 2.0f);
  const auto& g = m.graph();
  EXPECT_EQ(g.node(0).name(), "ln.mean");
  EXPECT_EQ(get_ints_attribute(g.node(0), "axes"), std::vector<int64_t>{-1});
  EXPECT_EQ(get_int_attribute(g.node(0), "keepdims", 0), 1);
  EXPECT_FLOAT_EQ(initializer_float(m, g.node(4).input(1)), 1e-3f);
  // The last node keeps the name and the metadata, and writes the output.
  EXPECT_EQ(g.node(8).name(), "ln");
  EXPECT_EQ(inputs_of(g.node(8)), (std::vector<std::string>{g.node(7).output(0), "b"}));
  EXPECT_EQ(g.node(8).output(0), "y");
  EXPECT_EQ(g.node(3).metadata_props(0).value(), namespace_value);
  for (const auto& n : g.node()) EXPECT_EQ(n.name().rfind("ln", 0), 0u) << n.name();
}

TEST(OpsetConversion, LayerNormalizationFromAxisOneNeedsTheRank) {
  auto m = make_model(17);
  set_int_attribute(add(m, "LayerNormalization", "ln", {"x", "w"}, {"y"}), "axis", 1);
  convert_opset(m, 16);
  EXPECT_EQ(get_ints_attribute(m.graph().node(0), "axes"), (std::vector<int64_t>{1, 2, 3}));
  // Without a bias the scaling Mul is the last node.
  EXPECT_EQ(m.graph().node(m.graph().node_size() - 1).op_type(), "Mul");
  EXPECT_EQ(m.graph().node(m.graph().node_size() - 1).name(), "ln");
}

TEST(OpsetConversion, GeluDecomposesInBothForms) {
  auto m = make_model(20);
  add(m, "Gelu", "gelu", {"x"}, {"y"});
  set_string_attribute(add(m, "Gelu", "gelu_tanh", {"x"}, {"z"}), "approximate", "tanh");
  convert_opset(m, 15);
  // The erf form in the order ONNX Runtime's GeluFusion recognises.
  EXPECT_EQ(op_types(m), (std::vector<std::string>{"Div", "Erf", "Add", "Mul", "Mul",                       // erf form
                                                   "Mul", "Mul", "Mul", "Add", "Mul", "Tanh", "Add", "Mul", "Mul"}));
  const auto& g = m.graph();
  EXPECT_EQ(g.node(4).name(), "gelu");
  EXPECT_EQ(g.node(13).name(), "gelu_tanh");
  EXPECT_FLOAT_EQ(initializer_float(m, g.node(0).input(1)), static_cast<float>(M_SQRT2));
  EXPECT_FLOAT_EQ(initializer_float(m, g.node(4).input(1)), 0.5f);
  EXPECT_FLOAT_EQ(initializer_float(m, g.node(7).input(1)), 0.044715f);
  EXPECT_FLOAT_EQ(initializer_float(m, g.node(9).input(1)), static_cast<float>(std::sqrt(2.0 / M_PI)));
}

TEST(OpsetConversion, HardSwishAndMishDecompose) {
  auto m = make_model(18);
  add(m, "HardSwish", "hs", {"x"}, {"h"});
  add(m, "Mish", "mish", {"h"}, {"y"});
  convert_opset(m, 13);
  ASSERT_EQ(op_types(m), (std::vector<std::string>{"HardSigmoid", "Mul", "Softplus", "Tanh", "Mul"}));
  const auto& g = m.graph();
  EXPECT_FLOAT_EQ(find_attribute(g.node(0), "alpha")->f(), 1.0f / 6.0f);
  EXPECT_FLOAT_EQ(find_attribute(g.node(0), "beta")->f(), 0.5f);
  EXPECT_EQ(g.node(0).name(), "hs.hard_sigmoid");
  EXPECT_EQ(inputs_of(g.node(1)), (std::vector<std::string>{"x", g.node(0).output(0)}));
  EXPECT_EQ(g.node(1).name(), "hs");
  EXPECT_EQ(g.node(4).name(), "mish");
  EXPECT_EQ(inputs_of(g.node(4)), (std::vector<std::string>{"h", g.node(3).output(0)}));
  // Opset 14 still has HardSwish.
  auto m14 = make_model(18);
  add(m14, "HardSwish", "hs", {"x"}, {"y"});
  convert_opset(m14, 14);
  EXPECT_EQ(op_types(m14), std::vector<std::string>{"HardSwish"});
}

TEST(OpsetConversion, GreaterOrEqualAndLessOrEqualBecomeNot) {
  auto m = make_model(16);
  add(m, "GreaterOrEqual", "ge", {"x", "x"}, {"a"});
  add(m, "LessOrEqual", "le", {"x", "x"}, {"b"});
  convert_opset(m, 11);
  EXPECT_EQ(op_types(m), (std::vector<std::string>{"Less", "Not", "Greater", "Not"}));
  EXPECT_EQ(m.graph().node(1).name(), "ge");
  EXPECT_EQ(m.graph().node(1).output(0), "a");
  EXPECT_EQ(m.graph().node(3).name(), "le");
}

TEST(OpsetConversion, IntegerMaxAndMinGoThroughDoubleBelowOpset12) {
  auto m = make_model(18);
  add_ints(m, "a", {3, -7});
  add_ints(m, "b", {5, -9});
  add(m, "Max", "max", {"a", "b"}, {"hi"});
  add(m, "Min", "min", {"x", "x"}, {"y"});  // float operands stay as they are
  convert_opset(m, 11);
  EXPECT_EQ(op_types(m), (std::vector<std::string>{"Cast", "Cast", "Max", "Cast", "Min"}));
  const auto& g = m.graph();
  EXPECT_EQ(get_int_attribute(g.node(0), "to", 0), onnx::TensorProto::DOUBLE);
  EXPECT_EQ(inputs_of(g.node(2)), (std::vector<std::string>{g.node(0).output(0), g.node(1).output(0)}));
  EXPECT_EQ(g.node(3).name(), "max");
  EXPECT_EQ(g.node(3).output(0), "hi");
  EXPECT_EQ(inputs_of(g.node(3)), std::vector<std::string>{g.node(2).output(0)});
  EXPECT_EQ(get_int_attribute(g.node(3), "to", 0), onnx::TensorProto::INT64);
  EXPECT_EQ(inputs_of(g.node(4)), (std::vector<std::string>{"x", "x"}));

  // Opset 12 takes integers as they are.
  auto m12 = make_model(18);
  add_ints(m12, "a", {3});
  add(m12, "Max", "max", {"a", "a"}, {"y"});
  convert_opset(m12, 12);
  EXPECT_EQ(op_types(m12), std::vector<std::string>{"Max"});
}

TEST(OpsetConversion, CastLikeBecomesCastWhenTheTypeIsKnown) {
  auto m = make_model(19);
  add_ints(m, "like", {1});
  set_int_attribute(add(m, "CastLike", "cl", {"x", "like"}, {"y"}), "saturate", 1);
  convert_opset(m, 13);
  const auto& n = m.graph().node(0);
  EXPECT_EQ(n.op_type(), "Cast");
  EXPECT_EQ(n.name(), "cl");
  EXPECT_EQ(inputs_of(n), std::vector<std::string>{"x"});
  EXPECT_EQ(get_int_attribute(n, "to", 0), onnx::TensorProto::INT64);
  EXPECT_EQ(find_attribute(n, "saturate"), nullptr);
  EXPECT_EQ(find_initializer(m.graph(), "like"), nullptr);

  auto unknown = make_model(15);
  // "r" comes from a custom op, whose result type is not known.
  add(unknown, "Custom", "custom", {"x"}, {"r"}).set_domain("example.org");
  add(unknown, "CastLike", "cl", {"x", "r"}, {"y"});
  const std::string error = conversion_error(unknown, 14);
  EXPECT_NE(error.find("target_type 'r' of unknown element type"), std::string::npos) << error;
  EXPECT_NE(error.find("lowest opset that works is 15"), std::string::npos) << error;
}

TEST(OpsetConversion, ShapeWithStartAndEndBecomesShapeAndSlice) {
  auto m = make_model(15);
  auto& s = add(m, "Shape", "shape", {"x"}, {"y"});
  set_int_attribute(s, "start", 1);
  set_int_attribute(s, "end", 3);
  set_int_attribute(add(m, "Shape", "whole", {"x"}, {"z"}), "start", 0);
  convert_opset(m, 11);
  ASSERT_EQ(op_types(m), (std::vector<std::string>{"Shape", "Slice", "Shape"}));
  const auto& g = m.graph();
  EXPECT_EQ(g.node(0).attribute_size(), 0);
  EXPECT_EQ(g.node(1).name(), "shape.slice");
  EXPECT_EQ(g.node(1).input(0), g.node(0).output(0));
  EXPECT_EQ(initializer_ints(m, g.node(1).input(1)), std::vector<int64_t>{1});
  EXPECT_EQ(initializer_ints(m, g.node(1).input(2)), std::vector<int64_t>{3});
  EXPECT_EQ(initializer_ints(m, g.node(1).input(3)), std::vector<int64_t>{0});
  EXPECT_EQ(g.node(1).output(0), "y");
  EXPECT_EQ(g.node(2).attribute_size(), 0);
  EXPECT_EQ(g.node(2).output(0), "z");
}

TEST(OpsetConversion, BatchNormalizationTrainingMode) {
  auto m = make_model(15);
  set_int_attribute(add(m, "BatchNormalization", "bn", {"x", "s", "b", "m", "v"}, {"y"}), "training_mode", 0);
  convert_opset(m, 13);
  EXPECT_EQ(find_attribute(m.graph().node(0), "training_mode"), nullptr);
  auto training = make_model(15);
  set_int_attribute(add(training, "BatchNormalization", "bn", {"x", "s", "b", "m", "v"}, {"y"}), "training_mode", 1);
  const std::string error = conversion_error(training, 13);
  EXPECT_NE(error.find("attribute training_mode=1"), std::string::npos) << error;
  EXPECT_NE(error.find("lowest opset that works is 14"), std::string::npos) << error;
}

TEST(OpsetConversion, ReshapeAllowzeroDroppedWhenTheShapeHoldsNoZero) {
  auto m = make_model(20);
  add_ints(m, "dims", {2, -1});
  set_int_attribute(add(m, "Reshape", "const_shape", {"x", "dims"}, {"a"}), "allowzero", 1);
  // A shape of run-time dimensions and non-zero constants.
  add(m, "Shape", "shape", {"x"}, {"s"});
  add_ints(m, "zero_index", {0});
  add(m, "Gather", "batch", {"s", "zero_index"}, {"n"});
  add_ints(m, "two", {2});
  add(m, "Mul", "double_batch", {"n", "two"}, {"n2"});
  add_ints(m, "rest", {-1});
  set_int_attribute(add(m, "Concat", "cat", {"n2", "rest"}, {"dyn"}), "axis", 0);
  set_int_attribute(add(m, "Reshape", "dyn_shape", {"x", "dyn"}, {"y"}), "allowzero", 1);
  convert_opset(m, 13);
  ASSERT_EQ(op_types(m), (std::vector<std::string>{"Reshape", "Shape", "Gather", "Mul", "Concat", "Reshape"}));
  EXPECT_EQ(find_attribute(m.graph().node(0), "allowzero"), nullptr);
  EXPECT_EQ(find_attribute(m.graph().node(5), "allowzero"), nullptr);

  auto computed = make_model(14);
  add(computed, "Shape", "shape", {"x"}, {"s"});
  add(computed, "Sub", "minus", {"s", "s"}, {"zeros"});
  set_int_attribute(add(computed, "Reshape", "r", {"x", "zeros"}, {"y"}), "allowzero", 1);
  EXPECT_NE(conversion_error(computed, 13).find("allowzero=1"), std::string::npos);

  auto zero = make_model(14);
  add_ints(zero, "dims", {0, -1});
  set_int_attribute(add(zero, "Reshape", "r", {"x", "dims"}, {"y"}), "allowzero", 1);
  const std::string error = conversion_error(zero, 13);
  EXPECT_NE(error.find("allowzero=1"), std::string::npos) << error;
  EXPECT_NE(error.find("lowest opset that works is 14"), std::string::npos) << error;
}

TEST(OpsetConversion, ConstantValueAttributesBecomeATensor) {
  auto m = make_model(20);
  set_ints_attribute(add(m, "Constant", "ints", {}, {"a"}), "value_ints", {3, 4});
  set_float_attribute(add(m, "Constant", "float", {}, {"b"}), "value_float", 2.5f);
  add(m, "Add", "add", {"a", "b"}, {"y"});
  convert_opset(m, 11);
  const auto& ints = find_attribute(m.graph().node(0), "value");
  ASSERT_NE(ints, nullptr);
  EXPECT_EQ(m.graph().node(0).attribute_size(), 1);
  EXPECT_EQ(ints->t().data_type(), onnx::TensorProto::INT64);
  EXPECT_EQ(std::vector<int64_t>(ints->t().dims().begin(), ints->t().dims().end()), std::vector<int64_t>{2});
  EXPECT_EQ(std::vector<int64_t>(ints->t().int64_data().begin(), ints->t().int64_data().end()),
            (std::vector<int64_t>{3, 4}));
  const auto& scalar = find_attribute(m.graph().node(1), "value")->t();
  EXPECT_EQ(scalar.dims_size(), 0);
  EXPECT_FLOAT_EQ(tensor_to_floats(scalar).at(0), 2.5f);
}

TEST(OpsetConversion, PadAxesSpelledOutAndWrapRefused) {
  auto m = make_model(18);
  add_ints(m, "pads", {1, 2});
  add_ints(m, "axes", {-1});
  add(m, "Pad", "pad", {"x", "pads", "", "axes"}, {"y"});
  convert_opset(m, 11);
  const auto& n = m.graph().node(0);
  ASSERT_EQ(n.input_size(), 2);
  EXPECT_EQ(initializer_ints(m, n.input(1)), (std::vector<int64_t>{0, 0, 0, 1, 0, 0, 0, 2}));

  auto wrap = make_model(19);
  add_ints(wrap, "pads", {0, 0, 0, 1, 0, 0, 0, 1});
  set_string_attribute(add(wrap, "Pad", "pad", {"x", "pads"}, {"y"}), "mode", "wrap");
  const std::string error = conversion_error(wrap, 18);
  EXPECT_NE(error.find("mode 'wrap'"), std::string::npos) << error;
  EXPECT_NE(error.find("lowest opset that works is 19"), std::string::npos) << error;
}

TEST(OpsetConversion, ResizeGetsRoiAndScalesAtElevenAndRefusesAntialias) {
  auto m = make_model(20);
  add_ints(m, "sizes", {2, 3, 8, 10});
  auto& r = add(m, "Resize", "resize", {"x", "", "", "sizes"}, {"y"});
  set_int_attribute(r, "antialias", 0);
  set_string_attribute(r, "keep_aspect_ratio_policy", "stretch");
  set_string_attribute(r, "mode", "nearest");
  convert_opset(m, 11);
  const auto& n = m.graph().node(0);
  ASSERT_EQ(n.input_size(), 4);
  for (int i : {1, 2}) {
    const auto* t = find_initializer(m.graph(), n.input(i));
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->data_type(), onnx::TensorProto::FLOAT);
    EXPECT_EQ(tensor_numel(*t), 0);
  }
  EXPECT_EQ(find_attribute(n, "antialias"), nullptr);
  EXPECT_EQ(find_attribute(n, "keep_aspect_ratio_policy"), nullptr);
  EXPECT_EQ(get_string_attribute(n, "mode", ""), "nearest");

  auto aa = make_model(19);
  set_int_attribute(add(aa, "Resize", "resize", {"x", "", "", "sizes"}, {"y"}), "antialias", 1);
  EXPECT_NE(conversion_error(aa, 13).find("lowest opset that works is 18"), std::string::npos);
  auto sym = make_model(19);
  set_string_attribute(add(sym, "Resize", "resize", {"x"}, {"y"}), "coordinate_transformation_mode",
                       "half_pixel_symmetric");
  EXPECT_NE(conversion_error(sym, 18).find("lowest opset that works is 19"), std::string::npos);
}

TEST(OpsetConversion, AttributesDroppedWhenTheyHoldTheirDefault) {
  auto m = make_model(21);
  set_int_attribute(add(m, "Cast", "cast", {"x"}, {"c"}), "saturate", 1);
  set_int_attribute(add(m, "ArgMax", "argmax", {"x"}, {"a"}), "select_last_index", 0);
  set_string_attribute(add(m, "ScatterND", "scatter", {"x", "i", "u"}, {"s"}), "reduction", "none");
  set_int_attribute(add(m, "LSTM", "lstm", {"x", "w", "r"}, {"y"}), "layout", 0);
  set_ints_attribute(add(m, "AveragePool", "pool", {"x"}, {"p"}), "dilations", {1, 1});
  convert_opset(m, 11);
  for (const auto& n : m.graph().node()) EXPECT_EQ(n.attribute_size(), 0) << n.name();

  auto last = make_model(13);
  set_int_attribute(add(last, "ArgMin", "argmin", {"x"}, {"y"}), "select_last_index", 1);
  EXPECT_NE(conversion_error(last, 11).find("lowest opset that works is 12"), std::string::npos);
  auto add_reduction = make_model(16);
  set_string_attribute(add(add_reduction, "ScatterElements", "s", {"x", "i", "u"}, {"y"}), "reduction", "add");
  EXPECT_NE(conversion_error(add_reduction, 15).find("lowest opset that works is 16"), std::string::npos);
  auto max_reduction = make_model(18);
  set_string_attribute(add(max_reduction, "ScatterElements", "s", {"x", "i", "u"}, {"y"}), "reduction", "max");
  EXPECT_NE(conversion_error(max_reduction, 17).find("lowest opset that works is 18"), std::string::npos);
}

TEST(OpsetConversion, DropoutRatioMovesBetweenInputAndAttribute) {
  auto m = make_model(13);
  onnx::TensorProto ratio = make_float_tensor("ratio", {}, std::vector<float>{0.25f});
  *m.mutable_graph()->add_initializer() = ratio;
  set_int_attribute(add(m, "Dropout", "drop", {"x", "ratio"}, {"y"}), "seed", 3);
  convert_opset(m, 11);
  const auto& n = m.graph().node(0);
  EXPECT_EQ(inputs_of(n), std::vector<std::string>{"x"});
  EXPECT_FLOAT_EQ(find_attribute(n, "ratio")->f(), 0.25f);
  EXPECT_EQ(find_attribute(n, "seed"), nullptr);
  convert_opset(m, 12);
  const auto& up = m.graph().node(0);
  ASSERT_EQ(up.input_size(), 2);
  EXPECT_FLOAT_EQ(initializer_float(m, up.input(1)), 0.25f);
  EXPECT_EQ(up.attribute_size(), 0);
}

TEST(OpsetConversion, OpWithoutFormNamesOpNodeModuleAndLowestOpset) {
  auto m = make_model(20);
  auto& t = add(m, "Trilu", "node_triu", {"x"}, {"y"});
  auto* scope = t.add_metadata_props();
  scope->set_key("namespace");
  scope->set_value(": torch.nn.modules.container.Sequential/0: models.Triangle/triu: aten.triu.default");
  const onnx::ModelProto before = m;
  const std::string error = conversion_error(m, 11);
  EXPECT_EQ(error,
            "cannot convert node 'node_triu' (op Trilu, module '0') from opset 20 to opset 11: Trilu has no form below "
            "opset 14; the lowest opset that works is 14");
  // A refused conversion leaves the model as it was.
  try {
    convert_opset(m, 11);
  } catch (const Error&) {
  }
  EXPECT_EQ(m.SerializeAsString(), before.SerializeAsString());
  convert_opset(m, 14);
  EXPECT_EQ(op_types(m), std::vector<std::string>{"Trilu"});
}

TEST(OpsetConversion, RefusedConversionGivesBackTheInitializersItMoved) {
  // The initializers move to the working copy rather than being copied
  // (they may be GBs of weights); the Squeeze converts before the Trilu is
  // refused, and the refusal moves both initializers back, in order.
  auto m = make_model(13);
  add_ints(m, "axes", {0});
  add_ints(m, "pads", {0, 0, 0, 0, 0, 0, 0, 0});
  add(m, "Squeeze", "squeeze", {"x", "axes"}, {"s"});
  add(m, "Trilu", "node_triu", {"s"}, {"y"});
  const onnx::ModelProto before = m;
  EXPECT_NE(conversion_error(m, 11).find("Trilu has no form below opset 14"), std::string::npos);
  try {
    convert_opset(m, 11);
    ADD_FAILURE() << "expected an error";
  } catch (const Error&) {
  }
  EXPECT_EQ(m.SerializeAsString(), before.SerializeAsString());
}

TEST(OpsetConversion, UnknownOpIsRefusedAndOtherDomainsPass) {
  auto m = make_model(20);
  add(m, "Upsample", "up", {"x"}, {"y"});
  const std::string error = conversion_error(m, 11);
  EXPECT_NE(error.find("node 'up' (op Upsample)"), std::string::npos) << error;
  EXPECT_NE(error.find("not known to the opset converter"), std::string::npos) << error;

  auto custom = make_model(20);
  auto& n = add(custom, "LayerNormalization", "ms", {"x"}, {"y"});
  n.set_domain("com.microsoft");
  convert_opset(custom, 11);
  EXPECT_EQ(op_types(custom), std::vector<std::string>{"LayerNormalization"});
  EXPECT_EQ(custom.graph().node(0).domain(), "com.microsoft");
}

TEST(OpsetConversion, ValueInfoOfRemovedTensorsIsDropped) {
  auto m = make_model(20);
  add_ints(m, "axes_init", {0});
  add(m, "Identity", "id", {"axes_init"}, {"axes"});
  add_value_info(m, "axes", {1});
  add(m, "Squeeze", "sq", {"x", "axes"}, {"s"});
  add_value_info(m, "s", {3, 4, 5});
  add(m, "Relu", "relu", {"s"}, {"y"});
  convert_opset(m, 11);
  // The Identity still produces "axes" (only Constant producers are removed), so its entry stays.
  ASSERT_EQ(m.graph().value_info_size(), 2);
  EXPECT_EQ(get_ints_attribute(m.graph().node(1), "axes"), std::vector<int64_t>{0});
  auto m2 = make_model(20);
  set_ints_attribute(add(m2, "Constant", "c", {}, {"axes"}), "value_ints", {0});
  add_value_info(m2, "axes", {1});
  add(m2, "Squeeze", "sq", {"x", "axes"}, {"y"});
  convert_opset(m2, 11);
  EXPECT_EQ(m2.graph().value_info_size(), 0);
  EXPECT_EQ(op_types(m2), std::vector<std::string>{"Squeeze"});
}

TEST(OpsetConversion, SubgraphsAreConverted) {
  auto m = make_model(20);
  auto& branch = add(m, "If", "if", {"cond"}, {"y"});
  for (const char* name : {"then_branch", "else_branch"}) {
    auto* attr = branch.add_attribute();
    attr->set_name(name);
    attr->set_type(onnx::AttributeProto::GRAPH);
    auto* g = attr->mutable_g();
    g->set_name(name);
    auto* n = g->add_node();
    n->set_op_type("HardSwish");
    n->set_name(std::string(name) + ".hs");
    n->add_input("x");
    n->add_output(std::string(name) + ".out");
    g->add_output()->set_name(std::string(name) + ".out");
  }
  convert_opset(m, 13);
  for (const auto& attr : m.graph().node(0).attribute()) {
    ASSERT_EQ(attr.g().node_size(), 2);
    EXPECT_EQ(attr.g().node(0).op_type(), "HardSigmoid");
    EXPECT_EQ(attr.g().node(1).op_type(), "Mul");
    EXPECT_EQ(attr.g().node(1).name(), attr.name() + ".hs");
  }
}

}  // namespace
}  // namespace amct
