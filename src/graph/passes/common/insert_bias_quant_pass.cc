// InsertBiasQuant (docs/amct-reference.md#insertbiasquant): a quantized layer's
// bias input becomes INT32 in the accumulator's scale, round(b / (scale_w *
// scale_d)). A MatMul's bias Add keeps its float bias, as in AMCT: its
// dequant comes before the Add.
#include <cstdint>
#include <string>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"
#include "amct/weight_quant.h"

namespace amct {
namespace {

// The node that reads the bias and at which input.
struct BiasUse {
  onnx::NodeProto* node = nullptr;
  int index = 0;
};

BiasUse find_bias_use(onnx::NodeProto& layer) {
  const int index = layer_bias_input(layer);
  return index < 0 ? BiasUse{} : BiasUse{&layer, index};
}

// INT4 activations: AMCT feeds the INT32 bias through a Cast(to=FLOAT)
// "<L>.bias_quant" in the deploy model (docs/amct-reference.md#int16-and-int4-notes).
void insert_bias_cast(onnx::GraphProto& graph, const QuantLayer& layer, BiasUse use) {
  const std::string name = layer.name + ".bias_quant";
  const std::string bias = use.node->input(use.index);
  use.node->set_input(use.index, name + ".output0");
  set_int_attribute(add_node(graph, "Cast", name, {bias}, {name + ".output0"}), "to", onnx::TensorProto::FLOAT);
}

}  // namespace

std::vector<float> bias_dequant_scales(const QuantLayer& layer, int64_t bias_size) {
  if (!is_recurrent_layer(layer)) return dequant_scales(layer);
  // LSTM/GRU B is [Wb, Rb]: Wb adds to X*W (scale_w * scale_d), Rb to
  // H*R (scale_r * scale_h).
  const int64_t rows = bias_size / 2;
  const auto per_row = [rows](std::vector<float> scales) {
    if (scales.size() == 1) scales.assign(static_cast<size_t>(rows), scales[0]);
    return scales;
  };
  std::vector<float> out = per_row(dequant_scales(layer));
  const std::vector<float> recurrent = per_row(recurrent_dequant_scales(layer));
  out.insert(out.end(), recurrent.begin(), recurrent.end());
  return out;
}

namespace {

void quantize_bias(onnx::GraphProto& graph, const QuantLayer& layer) {
  const BiasUse use = find_bias_use(layer_node(graph, layer));
  if (!use.node) return;
  onnx::TensorProto& bias = exclusive_initializer(graph, *use.node, use.index, layer.name + ".bias", "bias");
  const std::vector<float> floats = tensor_to_floats(bias);
  const std::vector<int32_t> values =
      integerize_bias(floats, bias_dequant_scales(layer, static_cast<int64_t>(floats.size())), layer.name);
  const std::string name = bias.name();
  const std::vector<int64_t> dims = tensor_dims(bias);
  bias.Clear();
  bias.set_name(name);
  for (auto d : dims) bias.add_dims(d);
  bias.set_data_type(onnx::TensorProto::INT32);
  for (int32_t v : values) bias.add_int32_data(v);
  if (layer.act_format.bits() == 4) insert_bias_cast(graph, layer, use);
}

}  // namespace

void insert_bias_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers) quantize_bias(graph, layer);
}

}  // namespace amct
