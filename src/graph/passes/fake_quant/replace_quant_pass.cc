// ReplaceQuant (docs/amct-reference.md#fake-quant-model): each AscendQuant becomes standard ONNX ops that
// compute clip(round(x * scale) + offset) - offset, the integer input of the
// layer held in float, so ONNX Runtime can run the fake-quant model.
#include <optional>
#include <string>
#include <vector>

#include "amct/error.h"
#include "amct/quant_format.h"
#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

struct QuantNode {
  std::string name, input, output;
  QuantFormat format;
  float scale = 1.0f, offset = 0.0f;
};

// The AscendQuant nodes are the ones insert_quant_pass wrote; a missing
// attribute is a broken invariant, reported instead of read.
float required_float(const onnx::NodeProto& node, const std::string& name) {
  if (!find_attribute(node, name))
    fail(ErrorCode::kRuntime, "internal error: AscendQuant '" + node.name() + "' has no attribute '" + name + "'");
  return get_float_attribute(node, name, 0.0f);
}

QuantNode read_quant(const onnx::NodeProto& node) {
  const std::string dst_type = get_string_attribute(node, "dst_type", "INT8");
  const std::optional<QuantFormat> format = QuantFormat::parse(dst_type, {4, 8, 16});
  if (!format)
    fail(ErrorCode::kRuntime, "internal error: AscendQuant '" + node.name() + "' has dst_type \"" + dst_type + "\"");
  QuantNode q{node.name(), node.input(0), node.output(0), *format};
  q.scale = required_float(node, "scale");
  q.offset = required_float(node, "offset");
  return q;
}

void build_fake_quant(onnx::GraphProto& graph, const QuantNode& q, bool float16_input) {
  const std::string p = q.name + ".fakequant.";
  const auto out = [&](const std::string& op) { return p + op + ".output0"; };
  // The multiplier is the stored 1/scale_d attribute, not a division by scale_d.
  add_scalar_constant(graph, p + "scale", q.scale);
  add_scalar_constant(graph, p + "offset", q.offset);
  add_scalar_constant(graph, p + "min_val", static_cast<float>(q.format.min()));
  add_scalar_constant(graph, p + "max_val", static_cast<float>(q.format.max()));
  std::string x = q.input;
  if (float16_input) {
    set_int_attribute(add_node(graph, "Cast", p + "cast", {x}, {out("cast")}), "to", onnx::TensorProto::FLOAT);
    x = out("cast");
  }
  add_node(graph, "Mul", p + "mul", {x, out("scale")}, {out("mul")});
  add_node(graph, "Round", p + "round", {out("mul")}, {out("round")});
  add_node(graph, "Add", p + "add", {out("round"), out("offset")}, {out("add")});
  add_node(graph, "Clip", p + "clip", {out("add"), out("min_val"), out("max_val")}, {out("clip")});
  // The Sub takes over the AscendQuant's output tensor, so consumers stay wired.
  add_node(graph, "Sub", p + "sub", {out("clip"), out("offset")}, {q.output});
}

}  // namespace

void replace_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  std::vector<QuantNode> quants;
  for (const auto& node : graph.node())
    if (node.op_type() == "AscendQuant") quants.push_back(read_quant(node));
  std::vector<std::string> replaced;
  for (const auto& q : quants) {
    const QuantLayer* layer = layer_of_node(plan, q.name, ".quant");
    build_fake_quant(graph, q, layer && layer->float16);
    replaced.push_back(q.name);
  }
  remove_nodes(graph, replaced);
}

}  // namespace amct
