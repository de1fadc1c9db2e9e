// ReplaceBiasQuant (docs/amct-reference.md#fake-quant-model): INT32 biases become FLOAT tensors with the same
// integers, matching the integer-domain accumulator of the fake-quant layer;
// the INT4-activation Cast "<L>.bias_quant" is no longer needed.
#include <string>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

void remove_bias_cast(onnx::GraphProto& graph, const QuantLayer& layer) {
  const onnx::NodeProto* cast = find_node(graph, layer.name + ".bias_quant");
  if (!cast) return;
  rename_input_uses(graph, cast->output(0), cast->input(0));
  remove_nodes(graph, {layer.name + ".bias_quant"});
}

void bias_to_float(onnx::TensorProto& bias) {
  std::vector<float> values(bias.int32_data().begin(), bias.int32_data().end());
  set_float_tensor(bias, values);
}

// LSTM/GRU: the standard op adds B in float, so the integers are dequantized
// with their accumulators' scales.
void bias_to_dequantized_float(onnx::TensorProto& bias, const QuantLayer& layer) {
  const std::vector<float> scales = bias_dequant_scales(layer, bias.int32_data_size());
  std::vector<float> values(static_cast<size_t>(bias.int32_data_size()));
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = static_cast<float>(bias.int32_data(static_cast<int>(i))) * scales[i];
  set_float_tensor(bias, values);
}

}  // namespace

void replace_bias_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers) {
    remove_bias_cast(graph, layer);
    const onnx::NodeProto& node = layer_node(graph, layer);
    const int index = layer_bias_input(node);
    onnx::TensorProto* bias = index < 0 ? nullptr : find_initializer(graph, node.input(index));
    if (!bias || bias->data_type() != onnx::TensorProto::INT32) continue;
    if (is_recurrent_layer(layer))
      bias_to_dequantized_float(*bias, layer);
    else
      bias_to_float(*bias);
  }
}

}  // namespace amct
