// InsertWeightQuant (docs/amct-reference.md#insertweightquant): the float
// weights of the modified ONNX (on the weight grid already, except AMCT's
// ConvTranspose weights) become the integers clamp(round(w / scale_w)),
// stored in the weight format's ONNX type.
#include <cstdint>
#include <string>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"
#include "amct/weight_quant.h"

namespace amct {
namespace {

void quantize_weight(onnx::GraphProto& graph, const QuantLayer& layer, int index, const std::vector<float>& scale,
                     const std::string& what) {
  onnx::NodeProto& node = layer_node(graph, layer);
  onnx::TensorProto& weight = exclusive_initializer(graph, node, index, layer.name + "." + what, what);
  const std::vector<int64_t> dims = tensor_dims(weight);
  // Straight from the float weight to one byte per value: the weight and its
  // integers are held together, no int32 copy.
  std::string bytes = integerize_weight_bytes(float_values_in_place(weight), node_channel_map(node, dims), scale,
                                              layer.weight_format, layer.name, weight.name());
  set_raw_tensor(weight, layer.weight_format.onnx_storage_type(), std::move(bytes));
}

}  // namespace

void insert_weight_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers) {
    if (layer.kind->weight_input >= 0) quantize_weight(graph, layer, layer.kind->weight_input, layer.weight_scale, "weight");
    // LSTM/GRU: the recurrence weight R too, with scale_r.
    if (layer.kind->recurrent_input >= 0)
      quantize_weight(graph, layer, layer.kind->recurrent_input, layer.recurrent_weight_scale, "recurrence_weight");
  }
}

}  // namespace amct
