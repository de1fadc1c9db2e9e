// A module can run without being called: Swin's attention computes
// F.linear(x, self.qkv.weight, self.qkv.bias), and nn.MultiheadAttention
// applies out_proj's weight inside F.multi_head_attention_forward. The
// exporter then puts the op outside the module's scope, so
// name_nodes_by_module cannot find it; the weight initializer (named by the
// parameter's path) leads to it instead.
#include <unordered_set>

#include "amct/layer_graph.h"
#include "amct/layer_kind.h"
#include "amct/model_prep.h"
#include "amct/onnx_graph.h"

namespace amct {
namespace {

std::string node_list(const std::vector<onnx::NodeProto*>& nodes) {
  std::string text;
  for (const auto* node : nodes)
    text += (text.empty() ? "'" : ", '") + node->name() + "' (" + node->op_type() + ")";
  return text;
}

// Why `reader`, the only node reading the module's weight, cannot become its
// layer ("" when it can).
std::string reader_problem(const onnx::NodeProto& reader, const ModuleInfo& module, const ModuleKind& kind,
                           const std::unordered_set<std::string>& module_names) {
  const std::string what = "node '" + reader.name() + "' (" + reader.op_type() + ")";
  if (module_names.count(reader.name())) return what + " is the op of module '" + reader.name() + "'";
  const OpKind* op = node_kind(reader);
  if (!exports_to(kind, reader.op_type()) || !op || op->weight_input < 0 ||
      reader.input_size() <= op->weight_input || reader.input(op->weight_input) != module.name + ".weight")
    return what + " reads its weight, and is not a " + std::string(kind.torch_type) +
           " op taking it as its weight input (the weight is sliced, transposed or computed on before use)";
  return standard_op_problem(reader, module);
}

}  // namespace

WeightReaders name_weight_readers(onnx::GraphProto& graph, const std::vector<ModuleInfo>& modules) {
  WeightReaders result;
  std::unordered_set<std::string> module_names;
  for (const auto& m : modules) module_names.insert(m.name);
  std::unordered_set<std::string> node_names;
  for (const auto& node : graph.node()) node_names.insert(node.name());

  const GraphIndex index(graph);
  for (const auto& m : modules) {
    const ModuleKind* kind = find_module_kind(m.layer_type);
    if (!kind || !m.has_weight || !has_weight(*kind) || is_recurrent(*kind) || node_names.count(m.name)) continue;
    const std::string weight = m.name + ".weight";
    if (!index.initializer(weight)) continue;
    const std::vector<onnx::NodeProto*>& readers = index.consumers(weight);
    if (readers.empty()) continue;
    const std::string prefix = "forward() does not call the module; ";
    if (readers.size() > 1) {
      result.problems[m.name] = prefix + "its weight is read by " + std::to_string(readers.size()) + " nodes (" +
                                node_list(readers) + "), and a layer used through its weight is quantized only " +
                                "when one op reads it";
      continue;
    }
    onnx::NodeProto& reader = *readers.front();
    if (const std::string problem = reader_problem(reader, m, *kind, module_names); !problem.empty()) {
      result.problems[m.name] = prefix + problem + "; a layer used through its weight is quantized only when " +
                                "its class's own op reads the weight parameter itself";
      continue;
    }
    node_names.erase(reader.name());
    reader.set_name(m.name);
    node_names.insert(m.name);
    result.named.insert(m.name);
  }
  return result;
}

}  // namespace amct
