// ReplaceRNN (docs/amct-reference.md#deploy-model), deploy only: a quantized
// LSTM/GRU node becomes AMCT's BasicLSTMInplaceFillWindowCache /
// BasicGRUInplaceFillWindowCache, which quantizes X and H itself (the
// quant_* attributes), runs on the INT8/INT4 W and R and the INT32 bias, and
// dequantizes its two accumulators with one UINT64 parameter list.
#include <string>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

// GE data-type codes of the quant_dtype attribute.
constexpr int64_t kGeInt8 = 2;
constexpr int64_t kGeInt16 = 6;

std::string input_or_empty(const onnx::NodeProto& node, int index) {
  return node.input_size() > index ? node.input(index) : std::string();
}

void copy_or_default(onnx::NodeProto& to, const onnx::NodeProto& from, const std::string& name,
                     const onnx::AttributeProto& fallback) {
  onnx::AttributeProto* attribute = to.add_attribute();
  if (const onnx::AttributeProto* found = find_attribute(from, name))
    *attribute = *found;
  else
    *attribute = fallback;
  attribute->set_name(name);
}

onnx::AttributeProto list_attribute(onnx::AttributeProto::AttributeType type) {
  onnx::AttributeProto a;
  a.set_type(type);
  return a;
}

onnx::AttributeProto float_attribute(float value) {
  onnx::AttributeProto a;
  a.set_type(onnx::AttributeProto::FLOAT);
  a.set_f(value);
  return a;
}

onnx::AttributeProto int_attribute(int64_t value) {
  onnx::AttributeProto a;
  a.set_type(onnx::AttributeProto::INT);
  a.set_i(value);
  return a;
}

onnx::AttributeProto string_attribute(const std::string& value) {
  onnx::AttributeProto a;
  a.set_type(onnx::AttributeProto::STRING);
  a.set_s(value);
  return a;
}

// scale_d * scale_w[...] then scale_h * scale_r[...], packed as AscendDequant's.
void add_dequant_param(onnx::GraphProto& graph, const QuantLayer& layer, const std::string& name) {
  std::vector<float> scales = dequant_scales(layer);
  const std::vector<float> recurrent = recurrent_dequant_scales(layer);
  scales.insert(scales.end(), recurrent.begin(), recurrent.end());
  auto* param = graph.add_initializer();
  param->set_name(name);
  param->set_data_type(onnx::TensorProto::UINT64);
  param->add_dims(static_cast<int64_t>(scales.size()));
  for (float scale : scales) param->add_uint64_data(pack_dequant_param(scale, 0));
}

void replace_rnn(onnx::GraphProto& graph, const QuantLayer& layer) {
  onnx::NodeProto& node = layer_node(graph, layer);
  const bool lstm = node.op_type() == "LSTM";
  const onnx::NodeProto original = node;
  // ONNX inputs X,W,R,B,sequence_lens,initial_h[,initial_c] in the deploy
  // op's order X,W,R,initial_h[,initial_c],B,sequence_lens, then clean_cache.
  const std::vector<int> order = lstm ? std::vector<int>{0, 1, 2, 5, 6, 3, 4} : std::vector<int>{0, 1, 2, 5, 3, 4};
  node.clear_input();
  for (int index : order) node.add_input(input_or_empty(original, index));
  node.add_input("");  // clean_cache
  const std::string param = layer.name + ".dequant.param";
  add_dequant_param(graph, layer, param);
  node.add_input(param);
  node.set_op_type(lstm ? "BasicLSTMInplaceFillWindowCache" : "BasicGRUInplaceFillWindowCache");
  node.clear_domain();

  node.clear_attribute();
  copy_or_default(node, original, "hidden_size", int_attribute(0));
  copy_or_default(node, original, "activation_alpha", list_attribute(onnx::AttributeProto::FLOATS));
  copy_or_default(node, original, "activation_beta", list_attribute(onnx::AttributeProto::FLOATS));
  copy_or_default(node, original, "activations", list_attribute(onnx::AttributeProto::STRINGS));
  copy_or_default(node, original, "clip", float_attribute(-1.0f));
  copy_or_default(node, original, "direction", string_attribute("forward"));
  if (lstm)
    copy_or_default(node, original, "input_forget", int_attribute(0));
  else
    copy_or_default(node, original, "linear_before_reset", int_attribute(0));
  set_int_attribute(node, "quant_sqrt_mode_x", 0);
  set_int_attribute(node, "quant_sqrt_mode_h", 0);
  // As AscendQuant's: 1/scale computed in double from the float32 record value.
  set_float_attribute(node, "quant_scale_x", static_cast<float>(1.0 / static_cast<double>(layer.data_scale)));
  set_float_attribute(node, "quant_offset_x", static_cast<float>(layer.data_offset));
  set_float_attribute(node, "quant_scale_h",
                      static_cast<float>(1.0 / static_cast<double>(layer.recurrent_data->scale)));
  set_float_attribute(node, "quant_offset_h", static_cast<float>(layer.recurrent_data->offset));
  set_int_attribute(node, "quant_dtype", layer.act_format.bits() == 16 ? kGeInt16 : kGeInt8);
  for (const auto& out : node.output()) remove_value_info(graph, out);
}

}  // namespace

void replace_rnn_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers)
    if (is_recurrent_layer(layer)) replace_rnn(graph, layer);
}

}  // namespace amct
