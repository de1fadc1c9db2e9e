// Both outputs drop the op_data_type attributes that quantize_model put on
// the layers: they are not part of any ONNX operator (docs/amct-reference.md#output-files).
#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {

void remove_op_data_type_pass(onnx::GraphProto& graph, const QuantPlan&) {
  for (auto& node : *graph.mutable_node()) remove_attribute(node, "op_data_type");
}

}  // namespace amct
