// PackInt4Weight (docs/amct-reference.md#int16-and-int4-notes), deploy only:
// the INT4 weights that InsertWeightQuant left one per byte are packed two
// per byte along the input-channel axis, in an INT8 tensor with that axis
// halved, as AMCT writes them for the Ascend converter. The fake-quant
// model is copied before this pass and keeps one integer per value.
#include <cstdint>
#include <string>
#include <vector>

#include "amct/error.h"
#include "amct/int4_packing.h"
#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

void pack_weight(onnx::GraphProto& graph, const QuantLayer& layer, int index) {
  onnx::NodeProto& node = layer_node(graph, layer);
  onnx::TensorProto* weight = find_initializer(graph, node.input(index));
  if (!weight || weight->data_type() != onnx::TensorProto::INT8)
    fail(ErrorCode::kRuntime, "internal error: layer '" + layer.name + "' has no INT8 weight to pack");
  // The record check refused an odd input-channel axis already.
  const std::vector<int64_t> dims = tensor_dims(*weight);
  const std::string& raw = weight->raw_data();
  std::vector<int32_t> values(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) values[i] = static_cast<int8_t>(raw[i]);
  PackedInt4 packed = pack_int4(values, dims, int4_pack_axis(node));
  weight->clear_dims();
  for (int64_t d : packed.dims) weight->add_dims(d);
  weight->set_raw_data(std::move(packed.bytes));
  remove_value_info(graph, weight->name());
}

}  // namespace

void pack_int4_weight_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers)
    if (layer.kind->weight_input >= 0 && layer.weight_format.bits() == 4) {
      pack_weight(graph, layer, layer.kind->weight_input);
      // LSTM/GRU: R is packed along its axis 2 as W is.
      if (layer.kind->recurrent_input >= 0) pack_weight(graph, layer, layer.kind->recurrent_input);
    }
}

}  // namespace amct
