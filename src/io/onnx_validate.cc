#include "amct/onnx_validate.h"

#include <algorithm>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "amct/error.h"
#include "amct/layer_graph.h"
#include "amct/onnx_graph.h"

namespace amct {
namespace {

std::string node_text(const onnx::NodeProto& node, int index) {
  return (node.name().empty() ? "node #" + std::to_string(index) : "node '" + node.name() + "'") + " (" +
         node.op_type() + ")";
}

std::string type_name(int32_t type) {
  if (onnx::TensorProto::DataType_IsValid(type))
    return onnx::TensorProto::DataType_Name(static_cast<onnx::TensorProto::DataType>(type));
  return "data type " + std::to_string(type);
}

// The typed field a tensor of `type` stores its values in without raw_data,
// and how many entries each element takes there; nullptr for types whose
// typed layout is packed (sub-byte) or unknown.
struct TypedField {
  const char* name;
  int per_element;
};

std::optional<TypedField> typed_field(int32_t type) {
  switch (type) {
    case 1: return TypedField{"float_data", 1};
    case 14: return TypedField{"float_data", 2};
    case 2: case 3: case 4: case 5: case 6: case 9: case 10: case 16: case 17: case 18: case 19: case 20: case 24:
      return TypedField{"int32_data", 1};
    case 7: return TypedField{"int64_data", 1};
    case 8: return TypedField{"string_data", 1};
    case 11: return TypedField{"double_data", 1};
    case 15: return TypedField{"double_data", 2};
    case 12: case 13: return TypedField{"uint64_data", 1};
    default: return std::nullopt;
  }
}

int64_t typed_count(const onnx::TensorProto& t, const std::string& field) {
  if (field == "float_data") return t.float_data_size();
  if (field == "int32_data") return t.int32_data_size();
  if (field == "int64_data") return t.int64_data_size();
  if (field == "string_data") return t.string_data_size();
  if (field == "double_data") return t.double_data_size();
  return t.uint64_data_size();
}

class Validator {
 public:
  explicit Validator(const std::string& origin) : where_("ONNX model '" + origin + "': ") {}

  void run(const onnx::GraphProto& main) {
    pending_.push_back({&main, -1, ""});
    while (!pending_.empty()) {
      const Pending next = pending_.front();
      pending_.pop_front();
      check_graph(next);
    }
  }

 private:
  struct Pending {
    const onnx::GraphProto* graph;
    int parent;          // index into scopes_ of the enclosing graph, -1 for the main graph
    std::string prefix;  // "subgraph 'body' of node 'loop' (Loop): " or ""
  };
  struct Scope {
    int parent;
    std::unordered_set<std::string> names;  // tensors defined in this graph
  };

  [[noreturn]] void reject(const std::string& prefix, const std::string& message) const {
    invalid(where_ + prefix + message);
  }

  bool defined(int scope, const std::string& name) const {
    for (int s = scope; s >= 0; s = scopes_[static_cast<size_t>(s)].parent)
      if (scopes_[static_cast<size_t>(s)].names.count(name)) return true;
    return false;
  }

  void check_tensor(const onnx::TensorProto& t, const std::string& prefix, const std::string& what) const {
    if (t.data_location() == onnx::TensorProto::EXTERNAL) {
      std::string file;
      for (const auto& entry : t.external_data())
        if (entry.key() == "location") file = entry.value();
      reject(prefix, what + " stores its data in the external file '" + file +
                         "', which is read only when the model is loaded from its file");
    }
    const int32_t type = t.data_type();
    if (type == onnx::TensorProto::UNDEFINED) reject(prefix, what + " has no data type");
    int64_t count = 1;
    for (int64_t d : t.dims()) {
      if (d < 0) reject(prefix, what + " has the negative dimension " + std::to_string(d));
      if (d != 0 && count > std::numeric_limits<int64_t>::max() / d)
        reject(prefix, what + " has dims whose product does not fit in int64");
      count *= d;
    }
    const std::string described = what + " (" + type_name(type) + ", " + std::to_string(count) + " elements)";
    if (t.has_raw_data()) {
      const int bits = element_bits(type);
      if (bits == 0) return;
      if (count > std::numeric_limits<int64_t>::max() / bits)
        reject(prefix, described + " is too large to hold in memory");
      const int64_t bytes = (count * bits + 7) / 8;
      if (static_cast<int64_t>(t.raw_data().size()) != bytes)
        reject(prefix, described + " has " + std::to_string(t.raw_data().size()) + " bytes of raw_data; expected " +
                           std::to_string(bytes));
      return;
    }
    const std::optional<TypedField> field = typed_field(type);
    if (!field) return;
    const int64_t have = typed_count(t, field->name);
    if (count > std::numeric_limits<int64_t>::max() / field->per_element)
      reject(prefix, described + " is too large to hold in memory");
    if (have != count * field->per_element)
      reject(prefix, described + " has " + std::to_string(have) + " values in " + field->name + "; expected " +
                         std::to_string(count * field->per_element));
  }

  // Tensor attributes are checked; graph attributes are queued as subgraphs
  // (one level of nesting at a time, so depth costs no C++ stack).
  void check_attributes(const onnx::NodeProto& node, int index, int scope, const std::string& prefix) {
    const std::string where = node_text(node, index);
    for (const auto& a : node.attribute()) {
      const std::string what = where + ": attribute '" + a.name() + "'";
      if (a.has_t()) check_tensor(a.t(), prefix, what);
      for (const auto& t : a.tensors()) check_tensor(t, prefix, what);
      if (a.has_g()) pending_.push_back({&a.g(), scope, prefix + "subgraph '" + a.name() + "' of " + where + ": "});
      for (const auto& g : a.graphs())
        pending_.push_back({&g, scope, prefix + "subgraph '" + a.name() + "' of " + where + ": "});
    }
  }

  void check_graph(const Pending& item) {
    const onnx::GraphProto& graph = *item.graph;
    const std::string& prefix = item.prefix;
    const int scope = static_cast<int>(scopes_.size());
    scopes_.push_back({item.parent, {}});
    std::unordered_set<std::string>& names = scopes_.back().names;

    std::unordered_set<std::string> inputs;
    for (const auto& in : graph.input())
      if (!inputs.insert(in.name()).second) reject(prefix, "graph input '" + in.name() + "' is declared twice");
    std::unordered_set<std::string> initializers;
    for (const auto& t : graph.initializer()) {
      if (t.name().empty()) reject(prefix, "an initializer has no name");
      if (!initializers.insert(t.name()).second)
        reject(prefix, "initializer '" + t.name() + "' is defined twice; expected one tensor per name");
      check_tensor(t, prefix, "initializer '" + t.name() + "'");
    }
    names = inputs;
    names.insert(initializers.begin(), initializers.end());
    for (const auto& s : graph.sparse_initializer()) names.insert(s.values().name());

    // Outputs first, so that the graph may list its nodes in any order
    // (save_model sorts them); the cycle check below catches what no order fixes.
    const int count = graph.node_size();
    std::unordered_map<std::string, int> producer;
    std::unordered_map<std::string, int> named;
    for (int i = 0; i < count; ++i) {
      const onnx::NodeProto& node = graph.node(i);
      const OpKind* kind = node_kind(node);
      if (node.output_size() == 0) reject(prefix, node_text(node, i) + " has no outputs; expected at least one");
      // LSTM and GRU may omit their sequence output (Y) and keep only Y_h.
      if (kind && kind->recurrent_input < 0 && node.output(0).empty())
        reject(prefix, node_text(node, i) + " has an empty name for output 0; a layer's result must be named");
      for (const auto& out : node.output()) {
        if (out.empty()) continue;
        if (const auto it = producer.find(out); it != producer.end())
          reject(prefix, "tensor '" + out + "' is written by " + node_text(graph.node(it->second), it->second) +
                             " and by " + node_text(node, i) + "; expected one producer per tensor");
        if (inputs.count(out) || initializers.count(out))
          reject(prefix, node_text(node, i) + " writes tensor '" + out + "', which is also a graph " +
                             (inputs.count(out) ? "input" : "initializer") + "; expected one definition per tensor");
        producer.emplace(out, i);
        names.insert(out);
      }
      if (!node.name().empty()) {
        const auto [it, fresh] = named.emplace(node.name(), i);
        if (!fresh && (kind || node_kind(graph.node(it->second))))
          reject(prefix, "two nodes are named '" + node.name() + "' (" + graph.node(it->second).op_type() + " and " +
                             node.op_type() + "); the node of a quantizable layer must have a unique name, "
                             "as records refer to layers by node name");
      }
      check_attributes(node, i, scope, prefix);
    }

    for (int i = 0; i < count; ++i) {
      const onnx::NodeProto& node = graph.node(i);
      for (int k = 0; k < node.input_size(); ++k) {
        const std::string& in = node.input(k);
        if (!in.empty() && !defined(scope, in))
          reject(prefix, node_text(node, i) + ": input " + std::to_string(k) + " '" + in +
                             "' is not defined; expected a graph input, an initializer or the output of a node");
      }
    }
    for (const auto& out : graph.output())
      if (!defined(scope, out.name()))
        reject(prefix, "graph output '" + out.name() +
                           "' is not defined; expected the output of a node, a graph input or an initializer");
    check_acyclic(graph, producer, prefix);
  }

  // Kahn's algorithm; a node left over lies on a cycle or after one, and
  // following left-over producers from it must revisit a node on the cycle.
  void check_acyclic(const onnx::GraphProto& graph, const std::unordered_map<std::string, int>& producer,
                     const std::string& prefix) const {
    const int count = graph.node_size();
    std::vector<std::vector<int>> deps(static_cast<size_t>(count));
    std::vector<std::vector<int>> users(static_cast<size_t>(count));
    std::vector<int> waiting(static_cast<size_t>(count), 0);
    for (int i = 0; i < count; ++i) {
      std::vector<int>& d = deps[static_cast<size_t>(i)];
      for (const auto& in : graph.node(i).input())
        if (const auto it = producer.find(in); it != producer.end()) d.push_back(it->second);
      std::sort(d.begin(), d.end());
      d.erase(std::unique(d.begin(), d.end()), d.end());
      waiting[static_cast<size_t>(i)] = static_cast<int>(d.size());
      for (int p : d) users[static_cast<size_t>(p)].push_back(i);
    }
    std::vector<int> ready;
    for (int i = 0; i < count; ++i)
      if (waiting[static_cast<size_t>(i)] == 0) ready.push_back(i);
    int done = 0;
    while (!ready.empty()) {
      const int i = ready.back();
      ready.pop_back();
      ++done;
      for (int u : users[static_cast<size_t>(i)])
        if (--waiting[static_cast<size_t>(u)] == 0) ready.push_back(u);
    }
    if (done == count) return;
    int current = 0;
    while (waiting[static_cast<size_t>(current)] == 0) ++current;
    std::vector<char> seen(static_cast<size_t>(count), 0);
    while (!seen[static_cast<size_t>(current)]) {
      seen[static_cast<size_t>(current)] = 1;
      for (int p : deps[static_cast<size_t>(current)])
        if (waiting[static_cast<size_t>(p)] > 0) {
          current = p;
          break;
        }
    }
    reject(prefix, node_text(graph.node(current), current) +
                       " is on a cycle: it depends on its own output; an ONNX graph must be acyclic");
  }

  std::string where_;
  std::deque<Pending> pending_;
  std::deque<Scope> scopes_;
};

}  // namespace

void validate_onnx_model(const onnx::ModelProto& model, const std::string& origin) {
  Validator(origin).run(model.graph());
}

}  // namespace amct
