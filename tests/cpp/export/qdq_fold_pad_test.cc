// QdqFoldPad on hand-built graphs: Pad(n, zero point) -> DequantizeLinear ->
// Conv and Pad(x, 0.0) -> QuantizeLinear -> DequantizeLinear -> Conv fold
// into the Conv's pads, and every case it must not touch stays.
#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

onnx::TensorProto int64_tensor(const std::string& name, const std::vector<int64_t>& values) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(onnx::TensorProto::INT64);
  t.add_dims(static_cast<int64_t>(values.size()));
  t.set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(int64_t)));
  return t;
}

onnx::NodeProto& add_node(onnx::GraphProto& g, const std::string& op, const std::string& name,
                          const std::vector<std::string>& inputs, const std::string& output) {
  onnx::NodeProto& n = *g.add_node();
  n.set_op_type(op);
  n.set_name(name);
  for (const auto& in : inputs) n.add_input(in);
  n.add_output(output);
  return n;
}

// n -> Pad "pad" (pads, fill "zp") -> DequantizeLinear "dq" (scale, dq_zero) -> Conv "conv" (conv_pads) -> y
onnx::GraphProto graph_with(const std::vector<int64_t>& pads, const std::string& dq_zero,
                            const std::vector<int64_t>& conv_pads, const std::string& auto_pad = "") {
  onnx::GraphProto g;
  *g.add_initializer() = int64_tensor("pads", pads);
  add_node(g, "Pad", "pad", {"n", "pads", "zp"}, "padded");
  add_node(g, "DequantizeLinear", "dq", {"padded", "scale", dq_zero}, "x");
  onnx::NodeProto& conv = add_node(g, "Conv", "conv", {"x", "w"}, "y");
  if (!conv_pads.empty()) set_ints_attribute(conv, "pads", conv_pads);
  if (!auto_pad.empty()) {
    auto* a = conv.add_attribute();
    a->set_name("auto_pad");
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(auto_pad);
  }
  g.add_output()->set_name("y");
  return g;
}

onnx::TensorProto float_scalar(const std::string& name, float value) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(onnx::TensorProto::FLOAT);
  t.set_raw_data(std::string(reinterpret_cast<const char*>(&value), sizeof value));
  return t;
}

// x -> Pad "pad" (pads, fill "fill" = `fill` when given) -> QuantizeLinear "q"
// (scale, zp) -> DequantizeLinear "dq" (scale, dq_zero) -> Conv "conv" -> y
onnx::GraphProto float_pad_graph(const std::vector<int64_t>& pads, std::optional<float> fill,
                                 const std::string& dq_zero = "zp") {
  onnx::GraphProto g;
  *g.add_initializer() = int64_tensor("pads", pads);
  std::vector<std::string> pad_inputs{"x", "pads"};
  if (fill) {
    *g.add_initializer() = float_scalar("fill", *fill);
    pad_inputs.push_back("fill");
  }
  add_node(g, "Pad", "pad", pad_inputs, "padded");
  add_node(g, "QuantizeLinear", "q", {"padded", "scale", "zp"}, "n");
  add_node(g, "DequantizeLinear", "dq", {"n", "scale", dq_zero}, "xq");
  add_node(g, "Conv", "conv", {"xq", "w"}, "y");
  g.add_output()->set_name("y");
  return g;
}

const onnx::NodeProto* node(const onnx::GraphProto& g, const std::string& name) {
  for (const auto& n : g.node())
    if (n.name() == name) return &n;
  return nullptr;
}

TEST(QdqFoldPad, ZeroPadBeforeConvBecomesItsPads) {
  // N, C, H, W begins then ends: H by 1 and 3, W by 2 and 4.
  onnx::GraphProto g = graph_with({0, 0, 1, 2, 0, 0, 3, 4}, "zp", {1, 1, 1, 1});
  qdq_fold_pad_pass(g, QuantPlan{});
  EXPECT_EQ(node(g, "pad"), nullptr);
  ASSERT_NE(node(g, "dq"), nullptr);
  EXPECT_EQ(node(g, "dq")->input(0), "n");
  EXPECT_EQ(get_ints_attribute(*node(g, "conv"), "pads"), (std::vector<int64_t>{2, 3, 4, 5}));
  EXPECT_EQ(g.initializer_size(), 0);  // the pads tensor is not read any more
}

TEST(QdqFoldPad, ConvWithoutPadsGetsThePadsOnly) {
  onnx::GraphProto g = graph_with({0, 0, 0, 0, 0, 0, 1, 1}, "zp", {});
  qdq_fold_pad_pass(g, QuantPlan{});
  EXPECT_EQ(node(g, "pad"), nullptr);
  EXPECT_EQ(get_ints_attribute(*node(g, "conv"), "pads"), (std::vector<int64_t>{0, 0, 1, 1}));
}

TEST(QdqFoldPad, ZeroPadOfTheFloatInputBeforeItsQuantizeLinearBecomesConvPads) {
  for (const std::optional<float> fill : {std::optional<float>(0.0f), std::optional<float>()}) {
    onnx::GraphProto g = float_pad_graph({0, 0, 0, 0, 0, 0, 1, 1}, fill);
    qdq_fold_pad_pass(g, QuantPlan{});
    EXPECT_EQ(node(g, "pad"), nullptr);
    ASSERT_NE(node(g, "q"), nullptr);
    EXPECT_EQ(node(g, "q")->input(0), "x");
    EXPECT_EQ(node(g, "dq")->input(0), "n");
    EXPECT_EQ(get_ints_attribute(*node(g, "conv"), "pads"), (std::vector<int64_t>{0, 0, 1, 1}));
    EXPECT_EQ(g.initializer_size(), 0);  // pads and fill are not read any more
  }
}

void declare_shape(onnx::GraphProto& g, const std::string& tensor, const std::vector<int64_t>& dims) {
  onnx::ValueInfoProto& info = *g.add_value_info();
  info.set_name(tensor);
  auto* tensor_type = info.mutable_type()->mutable_tensor_type();
  tensor_type->set_elem_type(onnx::TensorProto::FLOAT);
  for (const int64_t d : dims) tensor_type->mutable_shape()->add_dim()->set_dim_value(d);
}

std::vector<std::string> declared(const onnx::GraphProto& g) {
  std::vector<std::string> names;
  for (const auto& info : g.value_info()) names.push_back(info.name());
  return names;
}

TEST(QdqFoldPad, DropsTheDeclaredShapesThatLoseThePadding) {
  // The exporter declares the padded shape of what the Conv reads; after the
  // fold that tensor is unpadded (ONNX Runtime warned "Error merging shape
  // info" on EfficientNet-Lite0). The shape of the unpadded input stays.
  onnx::GraphProto g = graph_with({0, 0, 0, 0, 0, 0, 1, 1}, "zp", {});
  declare_shape(g, "n", {1, 3, 8, 8});
  declare_shape(g, "padded", {1, 3, 9, 9});
  declare_shape(g, "x", {1, 3, 9, 9});
  qdq_fold_pad_pass(g, QuantPlan{});
  ASSERT_EQ(node(g, "pad"), nullptr);
  EXPECT_EQ(declared(g), (std::vector<std::string>{"n"}));

  onnx::GraphProto f = float_pad_graph({0, 0, 0, 0, 0, 0, 1, 1}, 0.0f);
  declare_shape(f, "x", {1, 3, 8, 8});
  declare_shape(f, "padded", {1, 3, 9, 9});
  declare_shape(f, "n", {1, 3, 9, 9});
  declare_shape(f, "xq", {1, 3, 9, 9});
  qdq_fold_pad_pass(f, QuantPlan{});
  ASSERT_EQ(node(f, "pad"), nullptr);
  EXPECT_EQ(declared(f), (std::vector<std::string>{"x"}));
}

TEST(QdqFoldPad, LeavesWhatItCannotFold) {
  struct Case {
    const char* what;
    onnx::GraphProto graph;
  };
  std::vector<Case> cases;
  cases.push_back({"channel padding", graph_with({0, 1, 0, 0, 0, 0, 0, 0}, "zp", {})});
  cases.push_back({"negative pads (a crop)", graph_with({0, 0, -1, 0, 0, 0, 0, 0}, "zp", {})});
  cases.push_back({"fill other than the zero point", graph_with({0, 0, 1, 1, 0, 0, 1, 1}, "other_zp", {})});
  cases.push_back({"auto_pad", graph_with({0, 0, 1, 1, 0, 0, 1, 1}, "zp", {}, "SAME_UPPER")});
  {
    onnx::GraphProto g = graph_with({0, 0, 1, 1, 0, 0, 1, 1}, "zp", {});
    add_node(g, "Relu", "other_reader", {"padded"}, "z");
    cases.push_back({"padded tensor read twice", std::move(g)});
  }
  {
    onnx::GraphProto g = graph_with({0, 0, 1, 1, 0, 0, 1, 1}, "zp", {});
    g.mutable_node(0)->mutable_attribute()->Add()->set_name("mode");
    g.mutable_node(0)->mutable_attribute(0)->set_type(onnx::AttributeProto::STRING);
    g.mutable_node(0)->mutable_attribute(0)->set_s("reflect");
    cases.push_back({"reflect mode", std::move(g)});
  }
  cases.push_back({"float fill other than 0", float_pad_graph({0, 0, 1, 1, 0, 0, 1, 1}, 0.5f)});
  cases.push_back({"DequantizeLinear on another grid", float_pad_graph({0, 0, 1, 1, 0, 0, 1, 1}, 0.0f, "zp2")});
  {
    onnx::GraphProto g = float_pad_graph({0, 0, 1, 1, 0, 0, 1, 1}, 0.0f);
    add_node(g, "DequantizeLinear", "other_dq", {"n", "scale", "zp"}, "z");
    cases.push_back({"quantized padding read twice", std::move(g)});
  }
  for (Case& c : cases) {
    const std::string before = c.graph.SerializeAsString();
    qdq_fold_pad_pass(c.graph, QuantPlan{});
    EXPECT_EQ(c.graph.SerializeAsString(), before) << c.what;
  }
}

}  // namespace
}  // namespace amct
