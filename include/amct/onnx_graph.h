// Small helpers over onnx::ModelProto shared by the graph passes and writers:
// loading/saving, initializer access, producers/consumers, attributes.
#pragma once

#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "onnx/onnx.pb.h"

namespace amct {

// Reads a model file; tensors stored in external data files (resolved
// relative to the model's directory, onnx_external_data.h) are read into
// raw_data. The names of the initializers that were external go to
// `was_external` when given.
onnx::ModelProto load_onnx_model(const std::string& path, std::set<std::string>* was_external = nullptr);
// Parses serialized bytes; external data cannot be resolved without a file
// (validate_onnx_model refuses it).
onnx::ModelProto parse_onnx_model(std::string_view bytes, const std::string& origin);
// Serializes and writes atomically; a model of 2 GiB or more is refused
// with a clear error (stage_onnx_model in onnx_external_data.h moves large
// initializers out instead).
void save_onnx_model(const onnx::ModelProto& model, const std::string& path);
// Throws the error save_onnx_model gives for a model too large for one
// protobuf message (2 GiB).
void check_model_size(const onnx::ModelProto& model, const std::string& path);
// The bytes save_onnx_model writes to `path` (named in errors).
std::string serialize_onnx_model(const onnx::ModelProto& model, const std::string& path);

onnx::TensorProto* find_initializer(onnx::GraphProto& graph, const std::string& name);
const onnx::TensorProto* find_initializer(const onnx::GraphProto& graph, const std::string& name);
onnx::NodeProto* find_node(onnx::GraphProto& graph, const std::string& name);
const onnx::NodeProto* find_node(const onnx::GraphProto& graph, const std::string& name);
// The node producing `tensor`, or nullptr (graph input / initializer).
onnx::NodeProto* find_producer(onnx::GraphProto& graph, const std::string& tensor);
std::vector<onnx::NodeProto*> find_consumers(onnx::GraphProto& graph, const std::string& tensor);
bool is_graph_output(const onnx::GraphProto& graph, const std::string& tensor);
void remove_initializer(onnx::GraphProto& graph, const std::string& name);
// Removes initializers that no node reads and that are no graph output.
void remove_unread_initializers(onnx::GraphProto& graph);
// Removes the nodes whose names are listed.
void remove_nodes(onnx::GraphProto& graph, const std::vector<std::string>& names);
// Removes nodes none of whose outputs is read or is a graph output, repeatedly.
void remove_dead_nodes(onnx::GraphProto& graph);
// Reorders nodes so every node follows its producers (stable for ties).
void topological_sort(onnx::GraphProto& graph);

// Resolves a constant tensor: an initializer, or the output of a Constant
// node, also through Identity nodes (the exporter may de-duplicate
// identical constants that way). nullptr if `tensor` is not constant.
const onnx::TensorProto* resolve_constant(const onnx::GraphProto& graph, const std::string& tensor);

std::vector<int64_t> tensor_dims(const onnx::TensorProto& tensor);
// Bits per element of the ONNX data types whose raw_data size is fixed by the
// dims; 0 for STRING and types this build does not know.
int element_bits(int32_t type);
// The element count of `dims`; a negative dim or a product that overflows
// int64 throws kInvalidArgument naming `what` ("tensor 'w'") and the dims.
int64_t checked_numel(std::span<const int64_t> dims, const std::string& what);
int64_t tensor_numel(const onnx::TensorProto& tensor);
// "[2, 3, 3]", for messages.
std::string dims_text(std::span<const int64_t> dims);
// Float values of a FLOAT/FLOAT16/DOUBLE tensor (raw_data or typed fields); data whose size
// disagrees with the dims throws kInvalidArgument naming the tensor and both sizes.
std::vector<float> tensor_to_floats(const onnx::TensorProto& tensor);
// tensor_to_floats for a tensor that is about to be rewritten: its stored
// data is released as soon as it is read, so that a weight of several GB is
// not held in both forms while its new form is computed.
std::vector<float> take_tensor_floats(onnx::TensorProto& tensor);
// The tensor's values as float32 where they lie, in its raw_data; a tensor
// stored otherwise (FLOAT16, DOUBLE, float_data) is converted to FLOAT
// raw_data first. Passes rewrite a weight of GBs through this span instead
// of holding a second copy; it is valid until the tensor's data changes.
std::span<float> float_values_in_place(onnx::TensorProto& tensor);
// Replaces the content by FLOAT data (raw_data), keeping name and dims unless given.
void set_float_tensor(onnx::TensorProto& tensor, std::span<const float> values);
void set_float_tensor(onnx::TensorProto& tensor, std::span<const float> values, const std::vector<int64_t>& dims);
// Replaces the content by `raw` of `data_type`, keeping name and dims; `raw`
// is moved in, so a weight of GBs is never copied.
void set_raw_tensor(onnx::TensorProto& tensor, int32_t data_type, std::string raw);
onnx::TensorProto make_float_tensor(const std::string& name, const std::vector<int64_t>& dims,
                                    std::span<const float> values);

const onnx::AttributeProto* find_attribute(const onnx::NodeProto& node, const std::string& name);
// Attribute getters: the fallback when absent; an attribute of another type
// throws kInvalidArgument naming the node and the attribute.
int64_t get_int_attribute(const onnx::NodeProto& node, const std::string& name, int64_t fallback);
float get_float_attribute(const onnx::NodeProto& node, const std::string& name, float fallback);
std::vector<int64_t> get_ints_attribute(const onnx::NodeProto& node, const std::string& name);
std::string get_string_attribute(const onnx::NodeProto& node, const std::string& name, const std::string& fallback);
void set_int_attribute(onnx::NodeProto& node, const std::string& name, int64_t value);
void set_float_attribute(onnx::NodeProto& node, const std::string& name, float value);
void set_string_attribute(onnx::NodeProto& node, const std::string& name, const std::string& value);
void set_ints_attribute(onnx::NodeProto& node, const std::string& name, const std::vector<int64_t>& values);
void remove_attribute(onnx::NodeProto& node, const std::string& name);

// A node name not used by any node of the graph, built from `base`.
std::string unique_node_name(const onnx::GraphProto& graph, const std::string& base);

// The producer, consumers and initializer of every tensor of a graph, from
// one pass over it, so that a walk along a chain of N nodes costs O(N)
// instead of the O(N^2) of repeated find_producer / find_consumers scans.
// It is a snapshot: nodes and initializers added later are not in it, and
// it must be rebuilt after nodes or initializers are removed (their
// pointers dangle) or inputs and outputs are rewired.
class GraphIndex {
 public:
  explicit GraphIndex(onnx::GraphProto& graph);

  // As find_producer: the first node producing `tensor`, or nullptr.
  onnx::NodeProto* producer(const std::string& tensor) const;
  // As find_consumers: each node reading `tensor`, once, in graph order.
  const std::vector<onnx::NodeProto*>& consumers(const std::string& tensor) const;
  const onnx::TensorProto* initializer(const std::string& tensor) const;
  bool is_graph_output(const std::string& tensor) const;
  // As resolve_constant.
  const onnx::TensorProto* resolve_constant(const std::string& tensor) const;

 private:
  std::unordered_map<std::string, onnx::NodeProto*> producers_;
  std::unordered_map<std::string, std::vector<onnx::NodeProto*>> consumers_;
  std::unordered_map<std::string, const onnx::TensorProto*> initializers_;
  std::unordered_set<std::string> outputs_;
};

}  // namespace amct
