// QdqWeight: weights become INT8 initializers "<L>.weight" read through
// DequantizeLinear "<L>.weight_dequant" (zero point 0, scale scale_w on the
// output-channel axis: 0 for Conv and Gemm with transB, 1 for ConvTranspose,
// MatMul's [in, out] weight and Gemm without transB; per channel for Gemm and
// MatMul only under linear_channel_wise); biases become INT32 "<L>.bias" read
// through DequantizeLinear "<L>.bias_dequant" with scale float32(scale_w * scale_d), the scale ONNX
// Runtime gives the accumulator. The integers are AMCT's, from the shared
// integerization (weight_quant.h). A MatMul's bias Add keeps its float bias,
// as the fake-quant model does. A ConvInteger layer takes its weights shifted
// into UINT8 (value + 128, zero point 128) and its INT32 bias as [1, C, 1, ...]
// for the Add after it.
// A grouped ConvTranspose with per-channel scales that could not be regrouped
// into a Conv has no single scale axis (the channel is group x Cout/group),
// so its weight and bias are stored as the float values they dequantize to;
// ONNX Runtime has no integer kernel for it either way.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "amct/error.h"
#include "amct/onnx_graph.h"
#include "amct/save_passes.h"
#include "amct/weight_quant.h"

namespace amct {
namespace {

enum class WeightForm { kSigned, kUnsigned, kFloat };

onnx::TensorProto integer_tensor(const std::string& name, const std::vector<int64_t>& dims, int32_t data_type,
                                 std::string bytes) {
  onnx::TensorProto t;
  t.set_name(name);
  for (auto d : dims) t.add_dims(d);
  t.set_data_type(data_type);
  t.set_raw_data(std::move(bytes));
  return t;
}

// DequantizeLinear "<name>" of `tensor` with `scales` (1 or per axis) and a zero point of `zero_type`.
std::string add_dequantize(onnx::GraphProto& graph, const std::string& name, const std::string& tensor,
                           const std::vector<float>& scales, int axis, int32_t zero_type, size_t zero_bytes) {
  const bool per_axis = scales.size() > 1;
  const std::vector<int64_t> dims = per_axis ? std::vector<int64_t>{static_cast<int64_t>(scales.size())}
                                             : std::vector<int64_t>{};
  add_initializer(graph, make_float_tensor(name + ".scale", dims, scales));
  add_initializer(graph, integer_tensor(name + ".zero_point", dims, zero_type,
                                        std::string(scales.size() * zero_bytes, '\0')));
  onnx::NodeProto& node =
      add_node(graph, "DequantizeLinear", name, {tensor, name + ".scale", name + ".zero_point"}, {name + ".output0"});
  if (per_axis) set_int_attribute(node, "axis", axis);
  return name + ".output0";
}

void quantize_weight(onnx::GraphProto& graph, const QuantLayer& layer, onnx::NodeProto& node, WeightForm form) {
  onnx::TensorProto& weight = exclusive_initializer(graph, node, 1, layer.name + ".weight", "weight");
  const std::vector<int64_t> dims = tensor_dims(weight);
  // A regrouped ConvTranspose is a Conv here (qdq_deconv_to_conv_pass) with
  // several channels per deconvolution channel, and a ConvInteger keeps the
  // Conv layout.
  const WeightLayout layout = node.op_type() == "ConvInteger" ? WeightLayout::kOutFirst : node_kind(node)->layout;
  const ChannelMap channels = ChannelMap::for_weight(layout, dims, get_int_attribute(node, "group", 1),
                                                     get_int_attribute(node, "transB", 0) != 0);
  const std::vector<float> scales = qdq_channel_values(layer.weight_scale, channels.channels());
  const std::string name = weight.name();
  // The exporter may describe initializers in value_info; the type changes.
  remove_value_info(graph, name);
  // The weight is rewritten where it lies, or into one byte per value: never
  // an int32 copy of a weight of GBs.
  const std::span<float> values = float_values_in_place(weight);
  if (form == WeightForm::kFloat) {
    fake_quantize_weight(values, channels, scales, layer.weight_format, layer.name, name);
    return;
  }
  const int64_t shift = form == WeightForm::kUnsigned ? layer.weight_format.unsigned_shift() : 0;
  std::string bytes = integerize_weight_bytes(values, channels, scales, layer.weight_format, layer.name, name,
                                              static_cast<int32_t>(shift));
  weight = integer_tensor(name, dims,
                          form == WeightForm::kUnsigned ? layer.weight_format.onnx_unsigned_storage_type()
                                                        : layer.weight_format.onnx_storage_type(),
                          std::move(bytes));
  if (form == WeightForm::kUnsigned) {
    const std::string zero = layer.name + ".weight_zero_point";
    add_initializer(graph, integer_tensor(zero, {}, layer.weight_format.onnx_unsigned_storage_type(),
                                          std::string(1, static_cast<char>(shift))));
    node.add_input(zero);
    return;
  }
  node.set_input(1, add_dequantize(graph, layer.name + ".weight_dequant", name, scales, channels.axis(),
                                   layer.weight_format.onnx_storage_type(), 1));
}

// The node reading the bias and at which input; node nullptr if none.
std::pair<onnx::NodeProto*, int> bias_use(onnx::GraphProto& graph, const QuantLayer& layer, onnx::NodeProto& node) {
  if (node.op_type() == "ConvInteger") return {find_node(graph, layer.name + ".bias_add"), 1};
  const int index = layer_bias_input(node);
  return index < 0 ? std::pair<onnx::NodeProto*, int>{nullptr, 0} : std::pair<onnx::NodeProto*, int>{&node, index};
}

void quantize_bias(onnx::GraphProto& graph, const QuantLayer& layer, onnx::NodeProto& node, WeightForm form) {
  const auto [user, index] = bias_use(graph, layer, node);
  if (!user) return;
  onnx::TensorProto& bias = exclusive_initializer(graph, *user, index, layer.name + ".bias", "bias");
  const std::vector<float> values = tensor_to_floats(bias);
  const std::vector<float> deq = qdq_channel_values(dequant_scales(layer), static_cast<int64_t>(values.size()));
  const std::vector<int32_t> q = integerize_bias(values, deq, layer.name);
  std::vector<float> dequantized(values.size());
  for (size_t c = 0; c < values.size(); ++c)
    dequantized[c] = static_cast<float>(static_cast<double>(q[c]) * deq[deq.size() == 1 ? 0 : c]);
  const std::string name = bias.name();
  remove_value_info(graph, name);
  if (form == WeightForm::kFloat) {
    set_float_tensor(bias, dequantized);
    return;
  }
  std::vector<int64_t> dims = {static_cast<int64_t>(q.size())};
  if (form == WeightForm::kUnsigned) {
    // Broadcast over [N, C, spatial...] of the ConvInteger result.
    const onnx::TensorProto* weight = resolve_constant(graph, node.input(1));
    dims.assign(static_cast<size_t>(weight->dims_size()), 1);
    dims[1] = static_cast<int64_t>(q.size());
  }
  std::string bytes(q.size() * sizeof(int32_t), '\0');
  std::memcpy(bytes.data(), q.data(), bytes.size());
  bias = integer_tensor(name, dims, onnx::TensorProto::INT32, std::move(bytes));
  if (form == WeightForm::kUnsigned) return;
  std::vector<float> scales = deq.size() == 1 ? deq : qdq_channel_values(deq, static_cast<int64_t>(q.size()));
  user->set_input(index, add_dequantize(graph, layer.name + ".bias_dequant", name, scales, 0, onnx::TensorProto::INT32,
                                        sizeof(int32_t)));
}

void quantize_parameters(onnx::GraphProto& graph, const QuantLayer& layer) {
  onnx::NodeProto& node = layer_node(graph, layer);
  const OpKind* kind = node_kind(node);
  if (kind && kind->weight_input < 0) return;
  WeightForm form = WeightForm::kSigned;
  if (node.op_type() == "ConvInteger") form = WeightForm::kUnsigned;
  if (node.op_type() == "ConvTranspose" && layer.weight_scale.size() > 1 && get_int_attribute(node, "group", 1) > 1)
    form = WeightForm::kFloat;
  quantize_weight(graph, layer, node, form);
  quantize_bias(graph, layer, node, form);
}

}  // namespace

void qdq_weight_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers)
    if (qdq_quantizes(layer)) quantize_parameters(graph, layer);
}

}  // namespace amct
