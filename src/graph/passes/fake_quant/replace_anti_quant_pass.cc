// ReplaceAntiQuant (docs/amct-reference.md#fake-quant-model): each
// AscendAntiQuant (the integer-valued q - offset back to float) becomes a
// Constant "<name>.fake_antiquant.scale" and a Mul by it.
#include <string>
#include <vector>

#include "amct/error.h"
#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {

void replace_anti_quant_pass(onnx::GraphProto& graph, const QuantPlan&) {
  std::vector<onnx::NodeProto> anti_quants;
  for (const auto& node : graph.node())
    if (node.op_type() == "AscendAntiQuant") anti_quants.push_back(node);
  std::vector<std::string> replaced;
  for (const auto& node : anti_quants) {
    if (!find_attribute(node, "scale"))
      fail(ErrorCode::kRuntime, "internal error: AscendAntiQuant '" + node.name() + "' has no attribute 'scale'");
    const std::string p = node.name() + ".fake_antiquant.";
    add_scalar_constant(graph, p + "scale", get_float_attribute(node, "scale", 1.0f));
    replaced.push_back(node.name());
    add_node(graph, "Mul", p + "mul", {node.input(0), p + "scale.output0"}, {node.output(0)});
  }
  remove_nodes(graph, replaced);
}

}  // namespace amct
