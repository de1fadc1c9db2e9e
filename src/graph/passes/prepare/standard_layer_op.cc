// Whether a node is a quantizable class's own op applied to the module's own
// weight. The exporter keeps aten.linear and aten.conv*d as single fx nodes
// and writes each ONNX node's fx node into its metadata, which tells apart
// F.linear(x, w) from x @ w.t(): both export to the same MatMul on the same
// initializer, but only the first is the op calibration can watch (by the
// identity of its weight argument) and a quantized Linear computes.
#include "amct/layer_kind.h"
#include "amct/layer_graph.h"
#include "amct/model_prep.h"
#include "amct/onnx_graph.h"

namespace amct {
namespace {

constexpr const char* kFxNodeKey = "pkg.torch.onnx.fx_node";

// "%linear : [num_users=1] = call_function[target=torch.ops.aten.linear.default](args = ...)"
// -> "aten.linear" (overload dropped); "" when the metadata is absent or not a call.
std::string aten_op_of(const onnx::NodeProto& node) {
  for (const auto& prop : node.metadata_props()) {
    if (prop.key() != kFxNodeKey) continue;
    const std::string& text = prop.value();
    const std::string marker = "[target=";
    const size_t start = text.find(marker);
    if (start == std::string::npos) return "";
    const size_t end = text.find("](", start);
    if (end == std::string::npos) return "";
    std::string target = text.substr(start + marker.size(), end - start - marker.size());
    const std::string prefix = "torch.ops.";
    if (target.rfind(prefix, 0) == 0) target = target.substr(prefix.size());
    const size_t overload = target.rfind('.');
    return overload == std::string::npos ? target : target.substr(0, overload);
  }
  return "";
}

// "aten.conv2d" -> "F.conv2d", as a user writes the call.
std::string functional_name(std::string_view aten_op) {
  const std::string_view prefix = "aten.";
  if (aten_op.substr(0, prefix.size()) == prefix) aten_op.remove_prefix(prefix.size());
  return "F." + std::string(aten_op);
}

}  // namespace

std::string standard_op_problem(const onnx::NodeProto& node, const ModuleInfo& module) {
  const ModuleKind* kind = find_module_kind(module.layer_type);
  const std::string what = "node '" + node.name() + "' (" + node.op_type() + ")";
  if (!kind || kind->aten_ops.empty()) return what + " is not the op of a quantizable class";
  const std::string standard = std::string(kind->aten_ops.front());
  const std::string aten_op = aten_op_of(node);
  if (aten_op.empty())
    return what + " has no record of the torch op it comes from (the exporter's '" + kFxNodeKey +
           "' metadata), so it cannot be checked to be " + module.layer_type + "'s own op " + standard;
  if (!runs_aten_op(*kind, aten_op))
    return what + " comes from " + aten_op + ", not from " + module.layer_type + "'s own op " + standard + " (" +
           functional_name(standard) + ")";
  const OpKind* op = node_kind(node);
  if (op && op->weight_input >= 0) {
    const std::string weight = module.name + ".weight";
    const std::string& read = node.input_size() > op->weight_input ? node.input(op->weight_input) : "";
    if (read != weight)
      return what + " reads '" + read + "' as its weight, not the module's weight parameter '" + weight +
             "' itself: a weight that is sliced, transposed or computed on before the op is not quantized";
  }
  return "";
}

}  // namespace amct
