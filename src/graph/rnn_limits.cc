// The ONNX-level limits of an LSTM/GRU layer (docs/amct-reference.md#lstm-and-gru):
// the node must be the single-direction, default-activation form of the op
// that AMCT's Basic*InplaceFillWindowCache deploy ops compute, with its
// initial state coming from the model's inputs (the deploy op keeps the
// state in a cache the caller fills).
#include <set>
#include <vector>

#include "amct/layer_graph.h"
#include "amct/onnx_graph.h"

namespace amct {
namespace {

// The inputs of `node` whose values (not only their shapes) flow into its
// output: torch's exporter builds a state it makes up as zeros expanded to
// Shape(x), which must not count as coming from x.
std::vector<std::string> value_inputs(const onnx::NodeProto& node) {
  const std::string& op = node.op_type();
  if (op == "Shape" || op == "Size" || op == "ConstantOfShape") return {};
  if (op == "Expand" || op == "Reshape" || op == "Slice" || op == "Tile" || op == "Unsqueeze" || op == "Squeeze" ||
      op == "CastLike" || op == "Pad")
    return node.input_size() > 0 ? std::vector<std::string>{node.input(0)} : std::vector<std::string>{};
  return {node.input().begin(), node.input().end()};
}

// Whether the values of `tensor` are a graph input or computed (through any
// chain of nodes) from one.
bool fed_from_graph_input(const onnx::GraphProto& graph, const std::string& tensor) {
  std::set<std::string> inputs;
  for (const auto& v : graph.input())
    if (!find_initializer(graph, v.name())) inputs.insert(v.name());
  std::vector<std::string> pending{tensor};
  std::set<std::string> seen;
  while (!pending.empty()) {
    const std::string name = pending.back();
    pending.pop_back();
    if (name.empty() || !seen.insert(name).second) continue;
    if (inputs.count(name)) return true;
    for (const auto& node : graph.node())
      for (const auto& out : node.output())
        if (out == name) {
          const std::vector<std::string> inputs = value_inputs(node);
          pending.insert(pending.end(), inputs.begin(), inputs.end());
        }
  }
  return false;
}

std::string optional_input(const onnx::NodeProto& node, int index) {
  return node.input_size() > index ? node.input(index) : std::string();
}

}  // namespace

std::string rnn_limit_problem(const onnx::GraphProto& graph, const onnx::NodeProto& node) {
  const bool lstm = node.op_type() == "LSTM";
  const OpKind& kind = *node_kind(node);
  for (int index : {kind.weight_input, kind.recurrent_input}) {
    const char* what = index == kind.weight_input ? "W" : "R";
    const onnx::TensorProto* tensor = resolve_constant(graph, optional_input(node, index));
    if (!tensor) return std::string("its ") + what + " (input " + std::to_string(index) + ") is not a constant";
    if (tensor->dims_size() != 3 || tensor->dims(0) != 1)
      return std::string("its ") + what + " is not [1, gates x hidden, size] (one direction)";
  }
  const std::string direction = get_string_attribute(node, "direction", "forward");
  if (direction != "forward")
    return "its direction is \"" + direction + "\" (bidirectional or reverse); only \"forward\" is quantizable";
  for (const char* attribute : {"activations", "activation_alpha", "activation_beta", "clip"})
    if (find_attribute(node, attribute))
      return std::string("it sets the attribute '") + attribute + "'; only the default activations without clip are "
             "quantizable";
  if (get_int_attribute(node, "layout", 0) != 0) return "its layout is 1 (batch first); expected 0";
  if (lstm && get_int_attribute(node, "input_forget", 0) != 0) return "its input_forget is 1; expected 0";
  if (!lstm && get_int_attribute(node, "linear_before_reset", 0) == 0)
    return "its linear_before_reset is 0; expected 1, as torch's GRU exports";
  if (!optional_input(node, 4).empty()) return "it takes sequence_lens (input 4); expected none";
  if (lstm && !optional_input(node, 7).empty()) return "it has peephole weights P (input 7); expected none";
  const std::string initial_h = optional_input(node, 5);
  if (initial_h.empty() || !fed_from_graph_input(graph, initial_h))
    return "its initial_h (input 5) does not come from a model input; pass the initial state (hx) to forward()";
  if (lstm) {
    const std::string initial_c = optional_input(node, 6);
    if (initial_c.empty() || !fed_from_graph_input(graph, initial_c))
      return "its initial_c (input 6) does not come from a model input; pass the initial state (hx) to forward()";
  }
  const int gates = lstm ? 4 : 3;
  const std::string bias_name = optional_input(node, kind.bias_input);
  if (!bias_name.empty()) {
    const onnx::TensorProto* bias = resolve_constant(graph, bias_name);
    const int64_t rows = resolve_constant(graph, node.input(kind.weight_input))->dims(1);
    if (!bias || bias->dims_size() != 2 || bias->dims(0) != 1 || bias->dims(1) != 2 * rows)
      return "its bias B (input 3) is not a constant [1, " + std::to_string(2 * rows) + "] tensor";
  }
  const int64_t rows = resolve_constant(graph, node.input(kind.weight_input))->dims(1);
  if (rows % gates != 0)
    return "its W has " + std::to_string(rows) + " rows; expected a multiple of " + std::to_string(gates) + " gates";
  return "";
}

}  // namespace amct
