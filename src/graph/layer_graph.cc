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

namespace {

std::string dims_text(const onnx::TensorProto& tensor) {
  std::string text = "[";
  for (int i = 0; i < tensor.dims_size(); ++i) text += (i ? ", " : "") + std::to_string(tensor.dims(i));
  return text + "]";
}

// Conv and ConvTranspose split their channels into `group` groups; the
// channel maps and the regrouping divide by it.
std::string group_problem(const onnx::NodeProto& node, const onnx::TensorProto& weight) {
  if (node.op_type() != "Conv" && node.op_type() != "ConvTranspose") return "";
  const int64_t groups = get_int_attribute(node, "group", 1);
  if (groups <= 0) return "its group attribute is " + std::to_string(groups) + "; expected a positive number of groups";
  // Conv: [Cout, Cin/group, k...]; ConvTranspose: [Cin, Cout/group, k...].
  const int64_t split = weight.dims(0);
  if (split % groups != 0)
    return "its weight " + dims_text(weight) + " does not split into group=" + std::to_string(groups) +
           " groups: dimension 0 (" + std::to_string(split) + ") is not a multiple of " + std::to_string(groups);
  return "";
}

// The bias input, when present, must be a constant 1-D tensor of one value
// per output channel of its own: the bias passes rewrite it in place.
std::string bias_problem(const onnx::GraphProto& graph, const onnx::NodeProto& node, const OpKind& kind,
                         const onnx::TensorProto& weight, int64_t channels) {
  if (kind.bias_input < 0 || node.input_size() <= kind.bias_input || node.input(kind.bias_input).empty()) return "";
  const std::string& name = node.input(kind.bias_input);
  const std::string expected = "; expected a distinct constant 1-D tensor of " + std::to_string(channels) +
                               " values (one per output channel)";
  const onnx::TensorProto* bias = resolve_constant(graph, name);
  if (!bias) return "its bias (input " + std::to_string(kind.bias_input) + ") '" + name + "' is not a constant" + expected;
  if (bias == &weight || name == node.input(kind.weight_input))
    return "its bias (input " + std::to_string(kind.bias_input) + ") '" + name + "' is its weight tensor" + expected;
  const auto type = bias->data_type();
  if (type != onnx::TensorProto::FLOAT && type != onnx::TensorProto::FLOAT16 && type != onnx::TensorProto::DOUBLE)
    return "its bias '" + name + "' has ONNX data type " + std::to_string(type) + "; expected a floating-point tensor";
  if (bias->dims_size() != 1 || bias->dims(0) != channels)
    return "its bias '" + name + "' has dims " + dims_text(*bias) + expected;
  return "";
}

}  // namespace

std::string unquantizable_reason(const onnx::GraphProto& graph, const onnx::NodeProto& node) {
  const std::string& op = node.op_type();
  const OpKind* kind = node_kind(node);
  if (!kind) {
    std::string ops;
    for (const OpKind& k : op_kinds()) ops += (ops.empty() ? "" : ", ") + std::string(k.op_type);
    return "its op type " + op + " is not quantizable (expected one of " + ops + ")";
  }
  if (get_int_attribute(node, "is_reuse", 0) != 0) return "the module is called more than once";
  if (get_int_attribute(node, "input_dimension_reduction", 0) != 0) return "its input goes through an Unsqueeze";
  // The passes quantize input 0 of every layer.
  if (node.input_size() == 0 || node.input(0).empty()) return "it has no data input (input 0)";
  if (kind->weight_input < 0) return "";
  if (kind->recurrent_input >= 0) return rnn_limit_problem(graph, node);
  if (op == "Gemm" && get_int_attribute(node, "transA", 0) != 0) return "Gemm with transA=1 is not quantizable";
  const onnx::TensorProto* weight = layer_weight(graph, node);
  if (!weight) return "its weight (input " + std::to_string(kind->weight_input) + ") is not a constant";
  const int rank = weight->dims_size();
  if (rank < kind->min_weight_rank || rank > kind->max_weight_rank)
    return "its weight has rank " + std::to_string(rank) + "; expected " +
           (kind->min_weight_rank == kind->max_weight_rank
                ? std::to_string(kind->min_weight_rank)
                : std::to_string(kind->min_weight_rank) + " to " + std::to_string(kind->max_weight_rank));
  if (std::string reason = group_problem(node, *weight); !reason.empty()) return reason;
  int64_t channels = 0;
  try {
    channels = node_channel_map(node, tensor_dims(*weight)).channels();
  } catch (const Error& e) {
    return std::string("its weight does not fit the layer: ") + e.what();
  }
  return bias_problem(graph, node, *kind, *weight, channels);
}

}  // namespace amct
