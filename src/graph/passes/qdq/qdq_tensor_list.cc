// Which tensors the full-INT8 QDQ model quantizes (qdq_tensors.h).
//
// ONNX Runtime turns DequantizeLinear -> op -> QuantizeLinear into the op's
// integer kernel, so an op runs in integers only when all its data inputs
// and its output are quantized. The tensors listed are the inputs and the
// output of every op below ("integer op") whose data inputs all carry
// quantized values: values that come from a quantized layer or an integer
// op, possibly through ops that commute with quantization (Relu, MaxPool,
// reshaping; qdq_commutes_with_quantization). An op fed by a float-only
// computation (the Erf of a GELU, a LayerNorm) stays float: quantizing its
// inputs would only add error.
//
// A ReduceMean over the spatial axes counts as an integer op: the QDQ model
// has it as GlobalAveragePool (qdq_global_pool_pass.cc).
//
// An integer op's output that goes on through a chain of Relu / Clip (its
// only use each) is quantized after the chain instead: Runtime drops a Relu
// or Clip before a QuantizeLinear that clamps the same way, which keeps
// Add -> Relu one QLinearAdd, as quantize_static does.
//
// A quantized Conv's result (after its Relu / Clip) is listed too when some
// use does not end in quantized layers (a float ReduceMean before the
// classifier): with an output grid Runtime runs the conv as one QLinearConv
// and dequantizes, as quantize_static's graph does, instead of ConvInteger
// and a float rescale (QdqOutput). Results that only feed layers need no
// range, and graph outputs stay float.
#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "amct/onnx_graph.h"
#include "amct/qdq_tensors.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

// Ops with integer kernels (or fusions) in ONNX Runtime's QDQ transformers,
// and element-wise activations whose neighbours fuse when they are
// quantized (HardSwish, HardSigmoid, Gelu have no kernel of their own),
// and a ReduceMean over the spatial axes, which the QDQ model has as
// GlobalAveragePool.
bool integer_op(const GraphIndex& index, const QdqDeclaredRanks& ranks, const onnx::NodeProto& node) {
  static const char* const kOps[] = {"Add",     "Mul",       "Concat",      "AveragePool", "GlobalAveragePool",
                                     "Sigmoid", "HardSigmoid", "HardSwish", "Gelu",        "Softmax",
                                     "Resize",  "LeakyRelu"};
  return std::any_of(std::begin(kOps), std::end(kOps), [&](const char* op) { return node.op_type() == op; }) ||
         qdq_is_global_mean(index, ranks, node);
}

// The inputs an integer op reads values from; Resize's others are its
// region, scales and sizes.
int data_inputs(const onnx::NodeProto& node) { return node.op_type() == "Resize" ? 1 : node.input_size(); }

bool activation_matmul(const GraphIndex& index, const onnx::NodeProto& node) {
  if (node.op_type() != "MatMul" || node.input_size() != 2) return false;
  return !index.resolve_constant(node.input(0)) && !index.resolve_constant(node.input(1));
}

// Whether a conv's result `tensor` needs a grid of its own: some use,
// through ops that commute with quantization, reads its values and is
// neither the data input of an integer layer nor an integer op reading a
// tensor that such a layer reads too (a residual Add beside the next conv,
// which qdq_tensor_pass puts on that layer's grid). Shape and Size read no
// values. A result that reaches a graph output gets none: the model's output
// stays float, unrounded, as in AMCT's models.
bool needs_output_grid(const GraphIndex& index, const QdqDeclaredRanks& ranks, const std::string& tensor,
                       const std::unordered_set<std::string>& integer_layers) {
  const auto layer_input = [&](const onnx::NodeProto* use, const std::string& t) {
    return integer_layers.count(use->name()) && use->input(0) == t;
  };
  std::vector<const std::string*> pending{&tensor};
  std::unordered_set<const onnx::NodeProto*> expanded;
  bool needs = false;
  while (!pending.empty()) {
    const std::string& current = *pending.back();
    pending.pop_back();
    if (index.is_graph_output(current)) return false;
    const auto& uses = index.consumers(current);
    const bool read_by_layer =
        std::any_of(uses.begin(), uses.end(), [&](auto* use) { return layer_input(use, current); });
    for (const onnx::NodeProto* use : uses) {
      if (use->op_type() == "Shape" || use->op_type() == "Size" || layer_input(use, current)) continue;
      if (read_by_layer && integer_op(index, ranks, *use)) continue;
      if (use->output_size() != 1 || use->input(0) != current || !qdq_commutes_with_quantization(index, *use))
        needs = true;
      else if (expanded.insert(use).second)
        pending.push_back(&use->output(0));
    }
  }
  return needs;
}

}  // namespace

std::string qdq_after_activations(const GraphIndex& index, std::string tensor) {
  for (int hops = 0; hops < 16; ++hops) {
    if (index.is_graph_output(tensor)) break;
    const auto& uses = index.consumers(tensor);
    if (uses.size() != 1) break;
    const onnx::NodeProto& use = *uses.front();
    if ((use.op_type() != "Relu" && use.op_type() != "Clip") || use.input(0) != tensor || use.output_size() != 1 ||
        !qdq_commutes_with_quantization(index, use))
      break;
    tensor = use.output(0);
  }
  return tensor;
}

std::vector<std::string> full_qdq_tensors(onnx::GraphProto& graph, const std::unordered_set<std::string>& integer_layers,
                                          bool activation_matmuls) {
  const GraphIndex index(graph);
  const QdqDeclaredRanks ranks = qdq_declared_ranks(graph);
  std::unordered_set<std::string> quantized;  // tensors that carry quantized values
  std::vector<std::string> listed;
  std::unordered_set<std::string> seen;
  const auto list = [&](const std::string& tensor) {
    if (seen.insert(tensor).second) listed.push_back(tensor);
  };
  for (onnx::NodeProto& node : *graph.mutable_node()) {
    if (node.output_size() == 0) continue;
    if (integer_layers.count(node.name())) {
      const std::string& result = qdq_result_node(graph, node).output(0);
      quantized.insert(result);
      if (node.op_type() == "Conv") {
        const std::string output = qdq_after_activations(index, result);
        if (needs_output_grid(index, ranks, output, integer_layers)) list(output);
      }
      continue;
    }
    if (activation_matmuls && activation_matmul(index, node)) {
      list(node.input(0));
      list(node.input(1));
      quantized.insert(node.output(0));
      continue;
    }
    if (!node.input_size() || node.input(0).empty()) continue;
    if (qdq_commutes_with_quantization(index, node)) {
      if (quantized.count(node.input(0))) quantized.insert(node.output(0));
      continue;
    }
    if (!integer_op(index, ranks, node)) continue;
    bool all_quantized = true;
    for (int i = 0; i < data_inputs(node) && all_quantized; ++i)
      all_quantized = !node.input(i).empty() && quantized.count(node.input(i)) > 0;
    if (!all_quantized) continue;
    for (int i = 0; i < data_inputs(node); ++i) list(node.input(i));
    const std::string output = qdq_after_activations(index, node.output(0));
    list(output);
    quantized.insert(node.output(0));
    quantized.insert(output);
  }
  // In the order their producers run (graph inputs first).
  std::unordered_map<std::string, int> position;
  for (int i = 0; i < graph.node_size(); ++i)
    for (const std::string& output : graph.node(i).output()) position.emplace(output, i + 1);
  std::stable_sort(listed.begin(), listed.end(), [&](const std::string& a, const std::string& b) {
    const auto at = [&](const std::string& t) {
      const auto it = position.find(t);
      return it == position.end() ? 0 : it->second;
    };
    return at(a) < at(b);
  });
  return listed;
}

}  // namespace amct
