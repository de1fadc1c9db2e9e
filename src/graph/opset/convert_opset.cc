// The driver of the opset converter: checks the versions, converts every
// graph (subgraphs included) node by node through the op table, and updates
// the opset import and IR version.
#include "amct/opset_conversion.h"

#include <algorithm>
#include <unordered_set>

#include "amct/error.h"
#include "amct/onnx_graph.h"
#include "rewrite.h"

namespace amct {

namespace {

constexpr int64_t kLowestOpset = 11;
constexpr int64_t kHighestOpset = 21;

bool is_default_domain(const std::string& domain) { return domain.empty() || domain == "ai.onnx"; }

int64_t ir_version_for(int64_t opset) {
  if (opset <= 11) return 6;
  if (opset <= 14) return 7;
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  return 10;
}

// Every graph of the model, outer graphs before their subgraphs.
std::vector<onnx::GraphProto*> all_graphs(onnx::ModelProto& model) {
  std::vector<onnx::GraphProto*> graphs{model.mutable_graph()};
  for (size_t i = 0; i < graphs.size(); ++i)
    for (auto& node : *graphs[i]->mutable_node())
      for (auto& attr : *node.mutable_attribute()) {
        if (attr.has_g()) graphs.push_back(attr.mutable_g());
        for (auto& g : *attr.mutable_graphs()) graphs.push_back(&g);
      }
  return graphs;
}

// Applies the rule's changes between the source and the target opset.
void apply_rule(opset::Rewrite& r) {
  const std::string op = r.node.op_type();
  const opset::OpRule* rule = opset::find_rule(op);
  if (!rule) r.fail("op " + op + " is not known to the opset converter");
  const int64_t source = r.ctx.source();
  const int64_t target = r.ctx.target();
  if (target < source) {
    const bool has_down_at_since = std::any_of(rule->changes.begin(), rule->changes.end(), [&](const opset::Change& c) {
      return c.version == rule->since && c.down;
    });
    if (target < rule->since && !has_down_at_since) {
      r.step = rule->since;
      r.needs_step(op);
    }
    for (auto it = rule->changes.rbegin(); it != rule->changes.rend(); ++it) {
      if (it->version > source || it->version <= target) continue;
      r.step = it->version;
      if (!it->down) r.needs_step(op);
      it->down(r);
      // A decomposition replaced the op; its new nodes are already in the target form.
      if (r.node.op_type() != op) return;
    }
    return;
  }
  for (const auto& change : rule->changes) {
    if (change.version <= source || change.version > target || !change.up) continue;
    r.step = change.version;
    change.up(r);
    if (r.node.op_type() != op) return;
  }
}

// Converts the nodes of one graph; returns the tensors nodes stopped reading.
std::vector<std::string> convert_graph(onnx::GraphProto& graph, opset::UsedNames& names, int64_t source,
                                       int64_t target) {
  opset::Context ctx(graph, names, source, target);
  google::protobuf::RepeatedPtrField<onnx::NodeProto> converted;
  std::vector<std::string> detached;
  for (const auto& original : graph.node()) {
    if (!is_default_domain(original.domain())) {
      *converted.Add() = original;
      continue;
    }
    opset::Rewrite r(ctx, original);
    apply_rule(r);
    for (auto& n : r.before) *converted.Add() = std::move(n);
    *converted.Add() = std::move(r.node);
    for (auto& n : r.after) *converted.Add() = std::move(n);
    detached.insert(detached.end(), r.detached.begin(), r.detached.end());
  }
  graph.mutable_node()->Swap(&converted);
  return detached;
}

// Removes the Constant nodes and initializers that only fed inputs the
// conversion turned into attributes. A subgraph may read an outer tensor, so
// reads are counted over the whole model.
void remove_detached_constants(const std::vector<onnx::GraphProto*>& graphs,
                               const std::vector<std::vector<std::string>>& detached) {
  std::unordered_set<std::string> read;
  for (const auto* g : graphs) {
    for (const auto& n : g->node())
      for (const auto& in : n.input()) read.insert(in);
    for (const auto& o : g->output()) read.insert(o.name());
  }
  for (size_t i = 0; i < graphs.size(); ++i) {
    std::unordered_set<std::string> graph_inputs;
    for (const auto& vi : graphs[i]->input()) graph_inputs.insert(vi.name());
    std::vector<std::string> dead_nodes;
    for (const auto& tensor : detached[i]) {
      // An initializer that is also a graph input (IR 3 style) stays: the input would dangle without it.
      if (read.count(tensor) || graph_inputs.count(tensor)) continue;
      remove_initializer(*graphs[i], tensor);
      const auto* producer = find_producer(*graphs[i], tensor);
      if (producer && producer->op_type() == "Constant") dead_nodes.push_back(producer->name());
    }
    remove_nodes(*graphs[i], dead_nodes);
  }
}

// Keeps value_info only for tensors that still exist; the tensors a
// conversion keeps hold the same values as before, so their entries stay true.
void drop_stale_value_info(onnx::GraphProto& graph) {
  std::unordered_set<std::string> present;
  for (const auto& n : graph.node())
    for (const auto& out : n.output()) present.insert(out);
  auto* infos = graph.mutable_value_info();
  google::protobuf::RepeatedPtrField<onnx::ValueInfoProto> kept;
  for (auto& vi : *infos)
    if (present.count(vi.name())) kept.Add(std::move(vi));
  infos->Swap(&kept);
}

void collect_names(const onnx::GraphProto& graph, opset::UsedNames& names) {
  for (const auto& vi : graph.input()) names.tensors.insert(vi.name());
  for (const auto& t : graph.initializer()) names.tensors.insert(t.name());
  for (const auto& n : graph.node()) {
    names.nodes.insert(n.name());
    for (const auto& out : n.output()) names.tensors.insert(out);
  }
}

}  // namespace

int64_t default_opset(const onnx::ModelProto& model) {
  for (const auto& o : model.opset_import())
    if (is_default_domain(o.domain())) return o.version();
  return 0;
}

namespace {

// The conversion proper, on the caller's copy of the model.
void convert_work(onnx::ModelProto& work, int64_t source, int64_t target) {
  auto graphs = all_graphs(work);
  if (source == 0) {
    for (const auto* g : graphs)
      for (const auto& n : g->node())
        if (is_default_domain(n.domain()))
          invalid("node '" + n.name() + "' (op " + n.op_type() +
                  ") is in the default ONNX domain, but the model imports no default-domain opset");
  } else if (source != target) {
    opset::UsedNames names;
    for (const auto* g : graphs) collect_names(*g, names);
    std::vector<std::vector<std::string>> detached;
    // Converting a graph rebuilds its nodes, so subgraphs are found again afterwards.
    for (size_t i = 0; i < graphs.size(); ++i) {
      detached.push_back(convert_graph(*graphs[i], names, source, target));
      graphs = all_graphs(work);
    }
    remove_detached_constants(graphs, detached);
    for (auto* g : graphs) drop_stale_value_info(*g);
  }

  bool declared = false;
  for (auto& o : *work.mutable_opset_import())
    if (is_default_domain(o.domain())) {
      o.set_version(target);
      declared = true;
    }
  if (!declared) {
    auto* o = work.add_opset_import();
    o->set_domain("");
    o->set_version(target);
  }
  work.set_ir_version(ir_version_for(target));
}

}  // namespace

void convert_opset(onnx::ModelProto& model, int64_t target) {
  if (target < kLowestOpset || target > kHighestOpset)
    invalid("cannot convert to opset " + std::to_string(target) + ": the converter supports opsets " +
            std::to_string(kLowestOpset) + " to " + std::to_string(kHighestOpset));
  const int64_t source = default_opset(model);
  if (source != 0 && (source < kLowestOpset || source > kHighestOpset))
    invalid("cannot convert a model of opset " + std::to_string(source) + ": the converter reads opsets " +
            std::to_string(kLowestOpset) + " to " + std::to_string(kHighestOpset));
  for (const auto& f : model.functions())
    for (const auto& o : f.opset_import())
      if (is_default_domain(o.domain()) && o.version() != target)
        invalid("cannot convert the model to opset " + std::to_string(target) + ": its local function '" + f.name() +
                "' imports opset " + std::to_string(o.version()) + ", and functions are not converted");

  // Work on a copy so that a refused op leaves the caller's model untouched.
  // The main graph's initializers (the weights, possibly GBs) move to the
  // copy instead of being copied: until it has succeeded, conversion only
  // appends initializers, so on failure the originals move back.
  auto* originals = model.mutable_graph()->mutable_initializer();
  const int original_count = originals->size();
  onnx::ModelProto work;
  {
    google::protobuf::RepeatedPtrField<onnx::TensorProto> weights;
    weights.Swap(originals);
    work = model;
    work.mutable_graph()->mutable_initializer()->Swap(&weights);
  }
  try {
    convert_work(work, source, target);
  } catch (...) {
    auto* moved = work.mutable_graph()->mutable_initializer();
    moved->DeleteSubrange(original_count, moved->size() - original_count);
    originals->Swap(moved);
    throw;
  }
  model.Swap(&work);
}

}  // namespace amct
