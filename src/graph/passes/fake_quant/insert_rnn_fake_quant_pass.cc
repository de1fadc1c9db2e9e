// InsertRNNFakeQuant (docs/amct-reference.md#fake-quant-model): the LSTM/GRU
// op stays a standard ONNX op in the fake-quant model, so its X and
// initial_h are quantized and dequantized in front of it: an AscendQuant
// (1/scale) and an AscendAntiQuant (scale) each, which ReplaceQuant and
// ReplaceAntiQuant then turn into standard ops. As in AMCT, the hidden
// states the op computes inside its recurrence are not requantized.
#include <string>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

void quantize_input(onnx::GraphProto& graph, onnx::NodeProto& node, int index, const std::string& name,
                    float scale, int32_t offset, const QuantFormat& format) {
  const std::string input = node.input(index);
  const std::string quant = name + "quant";
  const std::string anti = name + "antiquant";
  onnx::NodeProto& q = add_node(graph, "AscendQuant", quant, {input}, {quant + ".output0"});
  set_float_attribute(q, "scale", static_cast<float>(1.0 / static_cast<double>(scale)));
  set_float_attribute(q, "offset", static_cast<float>(offset));
  set_string_attribute(q, "dst_type", format.name());
  onnx::NodeProto& a = add_node(graph, "AscendAntiQuant", anti, {quant + ".output0"}, {anti + ".output0"});
  set_float_attribute(a, "scale", scale);
  set_float_attribute(a, "offset", static_cast<float>(offset));
  set_string_attribute(a, "dst_type", format.name());
  node.set_input(index, anti + ".output0");
}

}  // namespace

void insert_rnn_fake_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers) {
    if (!is_recurrent_layer(layer)) continue;
    onnx::NodeProto& node = layer_node(graph, layer);
    quantize_input(graph, node, 0, layer.name + ".", layer.data_scale, layer.data_offset, layer.act_format);
    // initial_h (input 5): the record check made sure the node has one.
    quantize_input(graph, node, 5, layer.name + ".h_", layer.recurrent_data->scale, layer.recurrent_data->offset,
                   layer.act_format);
  }
}

}  // namespace amct
