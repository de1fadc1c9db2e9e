#include "amct/layer_graph.h"

#include "amct/error.h"
#include "amct/onnx_graph.h"

namespace amct {

const OpKind* node_kind(const onnx::NodeProto& node) { return find_op_kind(node.op_type()); }

const onnx::TensorProto* layer_weight(const onnx::GraphProto& graph, const onnx::NodeProto& node) {
  const OpKind* kind = node_kind(node);
  if (!kind || kind->weight_input < 0 || node.input_size() <= kind->weight_input) return nullptr;
  return resolve_constant(graph, node.input(kind->weight_input));
}

ChannelMap node_channel_map(const onnx::NodeProto& node, const std::vector<int64_t>& dims) {
  const OpKind* kind = node_kind(node);
  if (!kind) fail(ErrorCode::kRuntime, "internal error: node '" + node.name() + "' (" + node.op_type() +
                                           ") is not a quantizable layer kind");
  try {
    return ChannelMap::for_weight(kind->layout, dims, get_int_attribute(node, "group", 1),
                                  get_int_attribute(node, "transB", 0) != 0);
  } catch (const Error& e) {
    invalid("layer '" + node.name() + "': " + e.what());
  }
}

onnx::NodeProto* matmul_bias_add(onnx::GraphProto& graph, const onnx::NodeProto& matmul) {
  const std::string& product = matmul.output(0);
  if (is_graph_output(graph, product)) return nullptr;
  const auto consumers = find_consumers(graph, product);
  if (consumers.size() != 1 || consumers[0]->op_type() != "Add" || consumers[0]->input_size() != 2) return nullptr;
  onnx::NodeProto* add = consumers[0];
  if (add->input(0) == add->input(1)) return nullptr;
  const onnx::TensorProto* bias = resolve_constant(graph, add->input(bias_add_input_index(*add, product)));
  const onnx::TensorProto* weight = resolve_constant(graph, matmul.input(1));
  if (!bias || !weight || bias->dims_size() != 1 || weight->dims_size() != 2 || bias->dims(0) != weight->dims(1))
    return nullptr;
  return add;
}

int bias_add_input_index(const onnx::NodeProto& add, const std::string& product) {
  return add.input(0) == product ? 1 : 0;
}

std::string unquantizable_reason(const onnx::GraphProto& graph, const onnx::NodeProto& node) {
  const std::string& op = node.op_type();
  const OpKind* kind = node_kind(node);
  if (!kind) {
    std::string ops;
    for (const OpKind& k : op_kinds()) ops += (ops.empty() ? "" : ", ") + std::string(k.op_type);
    return "its op type " + op + " is not quantizable (expected one of " + ops + ")";
  }
  if (kind->recurrent_input >= 0) return op + " layers are not supported yet by save_model";
  if (get_int_attribute(node, "is_reuse", 0) != 0) return "the module is called more than once";
  if (get_int_attribute(node, "input_dimension_reduction", 0) != 0) return "its input goes through an Unsqueeze";
  if (kind->weight_input < 0) return "";
  if (op == "Gemm" && get_int_attribute(node, "transA", 0) != 0) return "Gemm with transA=1 is not quantizable";
  const onnx::TensorProto* weight = layer_weight(graph, node);
  if (!weight) return "its weight (input " + std::to_string(kind->weight_input) + ") is not a constant";
  const int rank = weight->dims_size();
  if (rank < kind->min_weight_rank || rank > kind->max_weight_rank)
    return "its weight has rank " + std::to_string(rank) + "; expected " +
           (kind->min_weight_rank == kind->max_weight_rank
                ? std::to_string(kind->min_weight_rank)
                : std::to_string(kind->min_weight_rank) + " to " + std::to_string(kind->max_weight_rank));
  try {
    node_channel_map(node, tensor_dims(*weight));
  } catch (const Error& e) {
    return std::string("its weight does not fit the layer: ") + e.what();
  }
  return "";
}

}  // namespace amct
