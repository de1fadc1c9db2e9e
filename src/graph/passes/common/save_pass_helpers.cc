// Graph helpers shared by the save passes.
#include <algorithm>
#include <cstring>

#include "amct/error.h"
#include "amct/onnx_graph.h"
#include "amct/save_passes.h"
#include "amct/weight_quant.h"

namespace amct {
namespace {

bool tensor_name_taken(const onnx::GraphProto& graph, const std::string& name) {
  if (find_initializer(graph, name)) return true;
  for (const auto& n : graph.node())
    for (const auto& out : n.output())
      if (out == name) return true;
  for (const auto& in : graph.input())
    if (in.name() == name) return true;
  return false;
}

std::string unique_tensor_name(const onnx::GraphProto& graph, const std::string& base) {
  if (!tensor_name_taken(graph, base)) return base;
  for (int i = 1;; ++i)
    if (!tensor_name_taken(graph, base + std::to_string(i))) return base + std::to_string(i);
}

}  // namespace

onnx::NodeProto& layer_node(onnx::GraphProto& graph, const QuantLayer& layer) {
  onnx::NodeProto* node = find_node(graph, layer.name);
  // check_record guarantees every planned layer is a node; a pass that lost
  // one is a bug, reported rather than dereferenced.
  if (!node) fail(ErrorCode::kRuntime, "internal error: layer '" + layer.name + "' is no longer a node of the graph");
  return *node;
}

const QuantLayer* layer_of_node(const QuantPlan& plan, const std::string& node_name, std::string_view suffix) {
  if (node_name.size() <= suffix.size() || !node_name.ends_with(suffix)) return nullptr;
  return plan.find(node_name.substr(0, node_name.size() - suffix.size()));
}

int layer_bias_input(const onnx::NodeProto& node) {
  const OpKind* kind = node_kind(node);
  if (!kind || kind->bias_input < 0 || node.input_size() <= kind->bias_input || node.input(kind->bias_input).empty())
    return -1;
  return kind->bias_input;
}

onnx::TensorProto& exclusive_initializer(onnx::GraphProto& graph, onnx::NodeProto& node, int index,
                                         const std::string& copy_name, const std::string& what) {
  const std::string name = node.input(index);
  onnx::TensorProto* own = find_initializer(graph, name);
  // A tensor the node reads at another input too (say its bias is its
  // weight) is not exclusive: rewriting it for one input would change the other.
  const bool read_once = std::count(node.input().begin(), node.input().end(), name) == 1;
  if (own && read_once && find_consumers(graph, name).size() == 1 && !is_graph_output(graph, name)) return *own;
  const onnx::TensorProto* value = resolve_constant(graph, name);
  if (!value) invalid("layer '" + node.name() + "': the " + what + " '" + name + "' is not a constant tensor");
  onnx::TensorProto copy = *value;
  copy.set_name(unique_tensor_name(graph, copy_name));
  node.set_input(index, copy.name());
  auto* added = graph.add_initializer();
  *added = std::move(copy);
  return *added;
}

std::vector<float> dequant_scales(const QuantLayer& layer) {
  return amct::dequant_scales(layer.weight_scale, layer.data_scale);
}

std::vector<float> recurrent_dequant_scales(const QuantLayer& layer) {
  if (!layer.recurrent_data)
    fail(ErrorCode::kRuntime, "internal error: layer '" + layer.name + "' has no hidden-state factors");
  return amct::dequant_scales(layer.recurrent_weight_scale, layer.recurrent_data->scale);
}

bool is_recurrent_layer(const QuantLayer& layer) { return layer.kind->recurrent_input >= 0; }

ChannelMap layer_channel_map(const onnx::GraphProto& graph, const onnx::NodeProto& node) {
  const onnx::TensorProto* weight = layer_weight(graph, node);
  if (!weight) fail(ErrorCode::kRuntime, "internal error: layer '" + node.name() + "' has no constant weight");
  return node_channel_map(node, tensor_dims(*weight));
}

uint64_t pack_dequant_param(float scale, int32_t weight_offset) {
  uint32_t bits;
  std::memcpy(&bits, &scale, sizeof bits);
  return (static_cast<uint64_t>(static_cast<uint8_t>(weight_offset)) << 32) + bits;
}

float unpack_dequant_scale(uint64_t param) {
  const auto bits = static_cast<uint32_t>(param & 0xFFFFFFFFu);
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return scale;
}

void rename_input_uses(onnx::GraphProto& graph, const std::string& from, const std::string& to,
                       const onnx::NodeProto* skip) {
  for (auto& n : *graph.mutable_node()) {
    if (&n == skip) continue;
    for (auto& in : *n.mutable_input())
      if (in == from) in = to;
  }
}

onnx::NodeProto& add_node(onnx::GraphProto& graph, const std::string& op_type, const std::string& name,
                          const std::vector<std::string>& inputs, const std::vector<std::string>& outputs) {
  auto* node = graph.add_node();
  node->set_op_type(op_type);
  node->set_name(name);
  for (const auto& in : inputs) node->add_input(in);
  for (const auto& out : outputs) node->add_output(out);
  return *node;
}

onnx::NodeProto& add_scalar_constant(onnx::GraphProto& graph, const std::string& name, float value) {
  onnx::NodeProto& node = add_node(graph, "Constant", name, {}, {name + ".output0"});
  auto* attr = node.add_attribute();
  attr->set_name("value");
  attr->set_type(onnx::AttributeProto::TENSOR);
  *attr->mutable_t() = make_float_tensor(name, {}, std::span<const float>(&value, 1));
  return node;
}

void remove_value_info(onnx::GraphProto& graph, const std::string& tensor) { remove_value_infos(graph, {tensor}); }

void remove_value_infos(onnx::GraphProto& graph, const std::unordered_set<std::string>& tensors) {
  auto* infos = graph.mutable_value_info();
  infos->erase(std::remove_if(infos->begin(), infos->end(),
                              [&](const onnx::ValueInfoProto& info) { return tensors.contains(info.name()); }),
               infos->end());
}

}  // namespace amct
