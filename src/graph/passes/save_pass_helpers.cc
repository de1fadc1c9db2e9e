// Graph helpers shared by the save passes.
#include <cassert>
#include <cstring>

#include "amct/error.h"
#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

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
  assert(node && "check_record guarantees every planned layer is a node");
  return *node;
}

const QuantLayer* layer_of_node(const QuantPlan& plan, const std::string& node_name, std::string_view suffix) {
  if (node_name.size() <= suffix.size() || !node_name.ends_with(suffix)) return nullptr;
  return plan.find(node_name.substr(0, node_name.size() - suffix.size()));
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

std::string layer_bias_name(onnx::GraphProto& graph, const onnx::NodeProto& node) {
  if (node.op_type() == "MatMul") {
    const onnx::NodeProto* add = matmul_bias_add(graph, node);
    return add ? add->input(bias_add_input_index(*add, node.output(0))) : "";
  }
  if (node.op_type() == "AveragePool" || node.input_size() < 3) return "";
  return node.input(2);
}

onnx::TensorProto& exclusive_initializer(onnx::GraphProto& graph, onnx::NodeProto& node, int index,
                                         const std::string& copy_name, const std::string& what) {
  const std::string name = node.input(index);
  onnx::TensorProto* own = find_initializer(graph, name);
  if (own && find_consumers(graph, name).size() == 1 && !is_graph_output(graph, name)) return *own;
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
  std::vector<float> scales;
  scales.reserve(layer.weight_scale.size());
  // The product of two float32 values is exact in double, so this equals
  // AMCT's float32 multiplication rounded once.
  for (float w : layer.weight_scale)
    scales.push_back(static_cast<float>(static_cast<double>(w) * static_cast<double>(layer.data_scale)));
  return scales;
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

void remove_value_info(onnx::GraphProto& graph, const std::string& tensor) {
  auto* infos = graph.mutable_value_info();
  for (int i = infos->size() - 1; i >= 0; --i)
    if (infos->Get(i).name() == tensor) infos->DeleteSubrange(i, 1);
}

}  // namespace amct
