// InsertDequant (docs/amct-reference.md#insertdequant): an AscendDequant
// "<L>.dequant" turns the layer's integer accumulator back into float with the
// UINT64 parameters "<L>.dequant.param". It follows the layer node itself; a
// MatMul's bias Add stays float after it, as in AMCT.
#include <string>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

// FORCE_FP16_QUANT keeps the 10 mantissa bits a float16 has ("s19").
float truncate_to_fp16_mantissa(float scale) {
  return unpack_dequant_scale(pack_dequant_param(scale, 0) & 0xFFFFE000u);
}

void add_dequant_param(onnx::GraphProto& graph, const QuantLayer& layer, const std::string& name) {
  auto* param = graph.add_initializer();
  param->set_name(name);
  param->set_data_type(onnx::TensorProto::UINT64);
  const auto scales = dequant_scales(layer);
  param->add_dims(static_cast<int64_t>(scales.size()));
  for (size_t c = 0; c < scales.size(); ++c) {
    const float scale = layer.fp16_dequant_scale ? truncate_to_fp16_mantissa(scales[c]) : scales[c];
    param->add_uint64_data(pack_dequant_param(scale, layer.weight_offset[c]));
  }
}

void insert_dequant(onnx::GraphProto& graph, const QuantLayer& layer) {
  onnx::NodeProto& anchor = layer_node(graph, layer);
  const std::string name = layer.name + ".dequant";
  const std::string result = anchor.output(0);
  // The tensor now carries integers; a stale float type would mislead readers.
  remove_value_info(graph, result);
  add_dequant_param(graph, layer, name + ".param");
  if (is_graph_output(graph, result)) {
    // The graph output keeps its name and now holds the dequantized value.
    const std::string integer = layer.name + "_output0";
    anchor.set_output(0, integer);
    set_int_attribute(add_node(graph, "AscendDequant", name, {integer, name + ".param"}, {result}), "dtype", 0);
    return;
  }
  onnx::NodeProto& dequant = add_node(graph, "AscendDequant", name, {result, name + ".param"}, {name + ".output0"});
  set_int_attribute(dequant, "dtype", 0);
  rename_input_uses(graph, result, name + ".output0", &dequant);
}

}  // namespace

void insert_dequant_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  // An LSTM/GRU deploy op dequantizes itself (ReplaceRNN).
  for (const auto& layer : plan.layers)
    if (!is_recurrent_layer(layer)) insert_dequant(graph, layer);
}

}  // namespace amct
