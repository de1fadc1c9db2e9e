// WeightFakequant (docs/amct-reference.md#fake-quant-model): INT8 weights (INT4/6/7 ones too, one per byte
// before the deploy-only packing) become FLOAT tensors holding the
// same integers (w_int - offset_w, and offset_w is always 0), so the layer
// computes in the integer domain; the scale is applied by the dequant Mul.
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

void integers_to_float(onnx::TensorProto& weight) {
  const std::string& raw = weight.raw_data();
  std::vector<float> values(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) values[i] = static_cast<float>(static_cast<int8_t>(raw[i]));
  set_float_tensor(weight, values);
}

}  // namespace

void weight_fakequant_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers) {
    if (layer.kind->weight_input < 0) continue;
    onnx::TensorProto* weight = find_initializer(graph, layer_node(graph, layer).input(layer.kind->weight_input));
    if (weight && weight->data_type() == onnx::TensorProto::INT8) integers_to_float(*weight);
  }
}

}  // namespace amct
