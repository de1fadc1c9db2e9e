// Helpers shared by the QDQ passes (qdq_*_pass.cc).
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {

// LSTM/GRU stay float: ONNX Runtime has no integer LSTM/GRU kernel for a
// standard-domain graph, so Q/DQ around one would compute in float anyway.
bool qdq_quantizes(const QuantLayer& layer) {
  return layer.act_format.bits() == 8 && !layer.float16 && layer.kind->recurrent_input < 0;
}

QdqParams qdq_input_params(onnx::GraphProto& graph, const QuantLayer& layer) {
  QdqParams params{layer.name + ".input_quant.scale", layer.name + ".input_quant.zero_point"};
  if (find_initializer(graph, params.scale)) return params;
  add_initializer(graph, make_float_tensor(params.scale, {}, std::span<const float>(&layer.data_scale, 1)));
  onnx::TensorProto zero_point;
  zero_point.set_name(params.zero_point);
  zero_point.set_data_type(layer.act_format.onnx_unsigned_storage_type());
  // offset_d is in the signed range (record check), so this fits the unsigned one.
  zero_point.set_raw_data(
      std::string(1, static_cast<char>(static_cast<uint8_t>(layer.data_offset + layer.act_format.unsigned_shift()))));
  add_initializer(graph, std::move(zero_point));
  return params;
}

std::vector<float> qdq_channel_values(const std::vector<float>& values, int64_t channels) {
  if (values.size() == 1) return values;
  const int64_t repeat = channels / static_cast<int64_t>(values.size());
  std::vector<float> out(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) out[static_cast<size_t>(c)] = values[static_cast<size_t>(c / repeat)];
  return out;
}

onnx::NodeProto& qdq_result_node(onnx::GraphProto& graph, onnx::NodeProto& layer) {
  if (layer.op_type() == "MatMul")
    if (onnx::NodeProto* add = matmul_bias_add(graph, layer)) return *add;
  return layer;
}

std::string take_output(onnx::GraphProto& graph, onnx::NodeProto& producer, int index, const std::string& renamed) {
  std::string original = producer.output(index);
  producer.set_output(index, renamed);
  // The type of the old name now describes the end of the new chain.
  remove_value_info(graph, renamed);
  return original;
}

const std::string& add_initializer(onnx::GraphProto& graph, onnx::TensorProto tensor) {
  auto* added = graph.add_initializer();
  *added = std::move(tensor);
  return added->name();
}

namespace {

// A Cast to a float type keeps a bound's value.
bool is_float_cast(const onnx::NodeProto& node) {
  if (node.op_type() != "Cast") return false;
  const int64_t to = get_int_attribute(node, "to", 0);
  return to == onnx::TensorProto::FLOAT || to == onnx::TensorProto::FLOAT16 || to == onnx::TensorProto::DOUBLE;
}

}  // namespace

std::string qdq_uncast(const GraphIndex& index, std::string tensor) {
  for (int hops = 0; hops < 64 && !index.initializer(tensor); ++hops) {
    const onnx::NodeProto* producer = index.producer(tensor);
    if (!producer || (producer->op_type() != "Identity" && producer->op_type() != "CastLike" &&
                      !is_float_cast(*producer)))
      break;
    tensor = producer->input(0);
  }
  return tensor;
}

std::optional<float> qdq_constant_scalar(const GraphIndex& index, const std::string& tensor) {
  const std::string name = qdq_uncast(index, tensor);
  if (const onnx::TensorProto* value = index.resolve_constant(name)) {
    const auto type = value->data_type();
    if (tensor_numel(*value) != 1 || (type != onnx::TensorProto::FLOAT && type != onnx::TensorProto::FLOAT16 &&
                                      type != onnx::TensorProto::DOUBLE))
      return std::nullopt;
    return tensor_to_floats(*value).at(0);
  }
  const onnx::NodeProto* producer = index.producer(name);
  if (!producer || producer->op_type() != "Constant") return std::nullopt;
  if (find_attribute(*producer, "value_float")) return get_float_attribute(*producer, "value_float", 0.0f);
  return std::nullopt;
}

bool qdq_fills_with_zero(const GraphIndex& index, const onnx::NodeProto& pad) {
  if (find_attribute(pad, "value")) return get_float_attribute(pad, "value", 0.0f) == 0.0f;
  if (pad.input_size() < 3 || pad.input(2).empty()) return true;
  return qdq_constant_scalar(index, pad.input(2)) == 0.0f;
}

std::optional<std::vector<int64_t>> qdq_int64_values(const onnx::TensorProto& tensor) {
  if (tensor.data_type() != onnx::TensorProto::INT64 || tensor.dims_size() > 1) return std::nullopt;
  if (!tensor.raw_data().empty()) {
    if (tensor.raw_data().size() % sizeof(int64_t) != 0) return std::nullopt;
    std::vector<int64_t> values(tensor.raw_data().size() / sizeof(int64_t));
    std::memcpy(values.data(), tensor.raw_data().data(), tensor.raw_data().size());
    return values;
  }
  return std::vector<int64_t>(tensor.int64_data().begin(), tensor.int64_data().end());
}

// Removes the initializers and Constant nodes of `tensors` that nothing
// reads any more (replaced float bounds and fills), in one pass over the
// graph however many there are.
void qdq_drop_unread(onnx::GraphProto& graph, const std::vector<std::string>& tensors) {
  std::unordered_set<std::string> read;
  for (const auto& n : graph.node())
    for (const auto& in : n.input()) read.insert(in);
  for (const auto& o : graph.output()) read.insert(o.name());
  std::unordered_set<std::string> unread;
  for (const std::string& tensor : tensors)
    if (!tensor.empty() && !read.count(tensor)) unread.insert(tensor);
  if (unread.empty()) return;
  auto* initializers = graph.mutable_initializer();
  google::protobuf::RepeatedPtrField<onnx::TensorProto> kept;
  for (auto& t : *initializers) {
    if (unread.count(t.name()))
      unread.erase(t.name());
    else
      kept.Add(std::move(t));
  }
  initializers->Swap(&kept);
  std::vector<std::string> constants;
  for (const auto& n : graph.node())
    if (n.op_type() == "Constant" && !n.name().empty() && n.output_size() == 1 && unread.count(n.output(0)))
      constants.push_back(n.name());
  remove_nodes(graph, constants);
}

}  // namespace amct
