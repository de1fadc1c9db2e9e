// WeightFakequant (docs/amct-reference.md#fake-quant-model): INT8 weights (INT4/6/7 ones too, one per byte
// before the deploy-only packing) become FLOAT tensors holding the
// same integers (w_int - offset_w, and offset_w is always 0), so the layer
// computes in the integer domain; the scale is applied by the dequant Mul.
// LSTM/GRU W and R become the float values w_int * scale instead: the
// standard op adds the two products inside its gates, so each must be in
// float already.
#include <cstring>
#include <string>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"
#include "amct/weight_quant.h"

namespace amct {
namespace {

// The floats are written straight into the new raw_data: the weight is held
// as bytes and floats, never also as a float vector.
void integers_to_float(onnx::TensorProto& weight) {
  const std::string& raw = weight.raw_data();
  std::string floats(raw.size() * sizeof(float), '\0');
  for (size_t i = 0; i < raw.size(); ++i) {
    const float value = static_cast<float>(static_cast<int8_t>(raw[i]));
    std::memcpy(floats.data() + i * sizeof(float), &value, sizeof(float));
  }
  set_raw_tensor(weight, onnx::TensorProto::FLOAT, std::move(floats));
}

void dequantize_to_float(const onnx::NodeProto& node, onnx::TensorProto& weight, const std::vector<float>& scale) {
  const std::string& raw = weight.raw_data();
  std::vector<int32_t> integers(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) integers[i] = static_cast<int8_t>(raw[i]);
  set_float_tensor(weight, dequantize_weight(integers, node_channel_map(node, tensor_dims(weight)), scale));
}

}  // namespace

void weight_fakequant_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers) {
    if (layer.kind->weight_input < 0) continue;
    if (is_recurrent_layer(layer)) {
      const onnx::NodeProto& node = layer_node(graph, layer);
      for (const auto& [index, scale] : {std::pair{layer.kind->weight_input, &layer.weight_scale},
                                         std::pair{layer.kind->recurrent_input, &layer.recurrent_weight_scale}}) {
        onnx::TensorProto* tensor = find_initializer(graph, node.input(index));
        if (tensor && tensor->data_type() == onnx::TensorProto::INT8) dequantize_to_float(node, *tensor, *scale);
      }
      continue;
    }
    onnx::TensorProto* weight = find_initializer(graph, layer_node(graph, layer).input(layer.kind->weight_input));
    if (weight && weight->data_type() == onnx::TensorProto::INT8) integers_to_float(*weight);
  }
}

}  // namespace amct
