// InsertQuant (docs/amct-reference.md#insertquant): an AscendQuant "<L>.quant" quantizes the input of
// every quantized layer; an AveragePool's own "<L>_pad" Pad moves behind it so
// the padding happens on integers (docs/amct-reference.md#avgpool2d).
#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

// The node whose input 0 is replaced by the quantized tensor.
onnx::NodeProto& quant_target(onnx::GraphProto& graph, onnx::NodeProto& layer) {
  // A weightless layer (AveragePool) may be padded by its own "<L>_pad" Pad.
  const OpKind* kind = node_kind(layer);
  if (!kind || kind->weight_input >= 0) return layer;
  onnx::NodeProto* pad = find_producer(graph, layer.input(0));
  if (!pad || pad->op_type() != "Pad" || pad->name() != layer.name() + "_pad") return layer;
  const std::string& padded = pad->output(0);
  if (find_consumers(graph, padded).size() != 1 || is_graph_output(graph, padded)) return layer;
  return *pad;
}

void insert_quant(onnx::GraphProto& graph, const QuantLayer& layer, onnx::NodeProto& target) {
  const std::string name = layer.name + ".quant";
  const std::string input = target.input(0);
  target.set_input(0, name + ".output0");
  onnx::NodeProto& quant = add_node(graph, "AscendQuant", name, {input}, {name + ".output0"});
  // AMCT computes 1/scale_d in double from the float32 record value.
  set_float_attribute(quant, "scale", static_cast<float>(1.0 / static_cast<double>(layer.data_scale)));
  set_float_attribute(quant, "offset", static_cast<float>(layer.data_offset));
  set_string_attribute(quant, "dst_type", layer.act_format.name());
}

}  // namespace

void insert_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  // LSTM/GRU inputs are quantized inside their deploy op (ReplaceRNN).
  for (const auto& layer : plan.layers)
    if (!is_recurrent_layer(layer)) insert_quant(graph, layer, quant_target(graph, layer_node(graph, layer)));
}

}  // namespace amct
