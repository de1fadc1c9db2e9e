// The dynamo-based exporter of torch 2.x records, for every ONNX node, the
// stack of module scopes it came from (metadata "pkg.torch.onnx.name_scopes":
// root "", then each nested module path, then the aten op). The innermost
// module path is the module that ran the op.
#include <map>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "amct/layer_kind.h"
#include "amct/model_prep.h"
#include "amct/onnx_graph.h"

namespace amct {
namespace {

constexpr const char* kNameScopesKey = "pkg.torch.onnx.name_scopes";

// The ONNX op that carries a module's computation.
bool is_primary_op(const ModuleInfo& module, const std::string& op_type) {
  // layer_type covers the subclasses that are quantized as their base class.
  if (const ModuleKind* kind = find_module_kind(module.layer_type)) return exports_to(*kind, op_type);
  const std::string& module_type = module.type;
  if (module_type.rfind("BatchNorm", 0) == 0) return op_type == "BatchNormalization";
  // Activation modules are named too, as AMCT does, so outputs read like the model.
  if (module_type == "ReLU") return op_type == "Relu";
  if (module_type == "ReLU6") return op_type == "Clip";
  if (module_type == "LeakyReLU") return op_type == "LeakyRelu";
  if (module_type == "Sigmoid" || module_type == "Tanh" || module_type == "Softmax") return op_type == module_type;
  return false;
}

// Parses the metadata value, a Python-style list of quoted strings:
// "['', 'features', 'features.0', 'conv2d']".
std::vector<std::string> parse_scope_list(const std::string& text) {
  std::vector<std::string> items;
  size_t i = 0;
  while (i < text.size()) {
    const char quote = text[i];
    if (quote != '\'' && quote != '"') {
      ++i;
      continue;
    }
    std::string item;
    for (++i; i < text.size() && text[i] != quote; ++i) {
      if (text[i] == '\\' && i + 1 < text.size()) ++i;
      item.push_back(text[i]);
    }
    ++i;
    items.push_back(item);
  }
  return items;
}

// The innermost module scope of a node ("" when none).
std::string innermost_module(const onnx::NodeProto& node) {
  for (const auto& prop : node.metadata_props()) {
    if (prop.key() != kNameScopesKey) continue;
    const auto scopes = parse_scope_list(prop.value());
    // The last entry names the op itself; the one before is its module.
    if (scopes.size() >= 2) return scopes[scopes.size() - 2];
  }
  return "";
}

}  // namespace

std::set<std::string> name_nodes_by_module(onnx::GraphProto& graph, const std::vector<ModuleInfo>& modules) {
  std::unordered_map<std::string, const ModuleInfo*> by_name;
  for (const auto& m : modules) by_name[m.name] = &m;

  std::map<std::string, std::vector<onnx::NodeProto*>> nodes_of_module;
  for (auto& node : *graph.mutable_node()) {
    const std::string module = innermost_module(node);
    auto it = by_name.find(module);
    if (module.empty() || it == by_name.end()) continue;
    if (is_primary_op(*it->second, node.op_type())) nodes_of_module[module].push_back(&node);
  }

  // Exporter names never collide with module paths in practice, but make sure
  // a module name is free before a node takes it.
  std::unordered_set<std::string> taken_names;
  for (const auto& m : modules) taken_names.insert(m.name);
  // One set of used names and a counter per base keep this linear when
  // many nodes (say a long chain of unnamed Identity nodes) need a name;
  // unique_node_name per node would rescan the graph each time.
  std::unordered_set<std::string> used;
  for (const auto& node : graph.node()) used.insert(node.name());
  std::unordered_map<std::string, int> next_suffix;
  for (auto& node : *graph.mutable_node()) {
    if (!node.name().empty() && !taken_names.count(node.name())) continue;
    const std::string base = "node_" + node.op_type();
    std::string name = base;
    for (int& k = next_suffix[base]; used.count(name);) name = base + std::to_string(++k);
    used.insert(name);
    node.set_name(name);
  }

  // First every module's node, then the extra calls of reused modules, so an
  // extra call never takes the name of another module ("conv" + "1").
  std::set<std::string> reused;
  for (auto& [module, nodes] : nodes_of_module) nodes.front()->set_name(module);
  for (auto& [module, nodes] : nodes_of_module) {
    for (size_t i = 1; i < nodes.size(); ++i) {
      std::string name = unique_node_name(graph, module);
      for (int k = 1; taken_names.count(name); ++k) name = unique_node_name(graph, module + "_call" + std::to_string(k));
      nodes[i]->set_name(name);
    }
    if (nodes.size() > 1) reused.insert(module);
  }
  return reused;
}

}  // namespace amct
