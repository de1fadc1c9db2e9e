// ReplaceQuant (spec 7.4): each AscendQuant becomes standard ONNX ops that
// compute clip(round(x * scale) + offset) - offset, the integer input of the
// layer held in float, so ONNX Runtime can run the fake-quant model.
#include <string>
#include <vector>

#include "amct/calib/quant_math.h"
#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

struct QuantNode {
  std::string name, input, output, dst_type;
  float scale = 1.0f, offset = 0.0f;
};

QuantNode read_quant(const onnx::NodeProto& node) {
  QuantNode q{node.name(), node.input(0), node.output(0), get_string_attribute(node, "dst_type", "INT8")};
  q.scale = find_attribute(node, "scale")->f();
  q.offset = find_attribute(node, "offset")->f();
  return q;
}

int bits_of(const std::string& dst_type) { return std::stoi(dst_type.substr(3)); }

void build_fake_quant(onnx::GraphProto& graph, const QuantNode& q, bool float16_input) {
  const std::string p = q.name + ".fakequant.";
  const auto out = [&](const std::string& op) { return p + op + ".output0"; };
  const int bits = bits_of(q.dst_type);
  // The multiplier is the stored 1/scale_d attribute, not a division by scale_d.
  add_scalar_constant(graph, p + "scale", q.scale);
  add_scalar_constant(graph, p + "offset", q.offset);
  add_scalar_constant(graph, p + "min_val", static_cast<float>(quant_min(bits)));
  add_scalar_constant(graph, p + "max_val", static_cast<float>(quant_max(bits)));
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
