// QdqWeight: weights become INT8 initializers "<L>.weight" read through
// DequantizeLinear "<L>.weight_dequant" (zero point 0, scale scale_w on the
// output-channel axis: 0 for Conv, 1 for ConvTranspose; per tensor for Gemm
// and MatMul); biases become INT32 "<L>.bias" read through DequantizeLinear
// "<L>.bias_dequant" with scale float32(scale_w * scale_d), the scale ONNX
// Runtime gives the accumulator. The integers are AMCT's (spec 7.2.4, 6.8).
// A ConvInteger layer takes UINT8 weights (value + 128, zero point 128) and
// its INT32 bias as [1, C, 1, ...] for the Add after it.
// A grouped ConvTranspose with per-channel scales that could not be regrouped
// into a Conv has no single scale axis (the channel is group x Cout/group),
// so its weight and bias are stored as the float values they dequantize to;
// ONNX Runtime has no integer kernel for it either way.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "amct/calib/quant_math.h"
#include "amct/error.h"
#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

enum class WeightForm { kInt8, kUint8, kFloat };

struct Channels {
  int axis = 0;        // scale axis of the weight
  int64_t count = 1;   // 1 for per tensor
};

Channels weight_channels(const QuantLayer& layer, const onnx::NodeProto& node, const std::vector<int64_t>& dims) {
  if (layer.weight_scale.size() == 1) return {};
  if (node.op_type() == "ConvTranspose") return {1, dims[1] * get_int_attribute(node, "group", 1)};
  return {0, dims[0]};
}

// Output channel of element i.
int64_t channel_of(int64_t i, const Channels& channels, const std::vector<int64_t>& dims) {
  if (channels.count == 1) return 0;
  int64_t inner = 1;
  for (size_t d = 2; d < dims.size(); ++d) inner *= dims[d];
  if (channels.axis == 0) return i / (dims[1] * inner);
  // ConvTranspose [Cin, Cout/g, k...]: channel g * Cout/g + local (spec 6.4).
  const int64_t group_in = dims[0] / (channels.count / dims[1]);
  return (i / (dims[1] * inner)) / group_in * dims[1] + (i / inner) % dims[1];
}

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
  const std::vector<float> values = tensor_to_floats(weight);
  const std::vector<int64_t> dims = tensor_dims(weight);
  const Channels channels = weight_channels(layer, node, dims);
  const std::vector<float> scales = qdq_channel_values(layer.weight_scale, channels.count);
  const auto lo = static_cast<float>(quant_min(layer.weight_bits));
  const auto hi = static_cast<float>(quant_max(layer.weight_bits));
  std::vector<float> dequantized(values.size());
  std::string bytes(values.size(), '\0');
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i]))
      invalid("layer '" + layer.name + "': weight '" + weight.name() + "' contains inf or NaN at element " +
              std::to_string(i) + "; expected finite values");
    const float scale = scales[static_cast<size_t>(channel_of(static_cast<int64_t>(i), channels, dims))];
    // float32 division, as AMCT's InsertWeightQuant.
    const float q = std::clamp(round_half_even(values[i] / scale), lo, hi);
    dequantized[i] = q * scale;
    bytes[i] = static_cast<char>(form == WeightForm::kUint8 ? static_cast<uint8_t>(q + 128.0f)
                                                            : static_cast<uint8_t>(static_cast<int8_t>(q)));
  }
  const std::string name = weight.name();
  // The exporter may describe initializers in value_info; the type changes.
  remove_value_info(graph, name);
  if (form == WeightForm::kFloat) {
    set_float_tensor(weight, dequantized);
    return;
  }
  weight = integer_tensor(name, dims, form == WeightForm::kUint8 ? onnx::TensorProto::UINT8 : onnx::TensorProto::INT8,
                          std::move(bytes));
  if (form == WeightForm::kUint8) {
    const std::string zero = layer.name + ".weight_zero_point";
    add_initializer(graph, integer_tensor(zero, {}, onnx::TensorProto::UINT8, std::string(1, '\x80')));
    node.add_input(zero);
    return;
  }
  node.set_input(1, add_dequantize(graph, layer.name + ".weight_dequant", name, scales, channels.axis,
                                   onnx::TensorProto::INT8, 1));
}

// The node reading the bias and at which input; node nullptr if none.
std::pair<onnx::NodeProto*, int> bias_use(onnx::GraphProto& graph, const QuantLayer& layer, onnx::NodeProto& node) {
  if (node.op_type() == "ConvInteger") return {find_node(graph, layer.name + ".bias_add"), 1};
  if (node.op_type() == "MatMul") {
    onnx::NodeProto* add = matmul_bias_add(graph, node);
    return {add, add ? bias_add_input_index(*add, node.output(0)) : 0};
  }
  if (node.input_size() > 2 && !node.input(2).empty()) return {&node, 2};
  return {nullptr, 0};
}

void quantize_bias(onnx::GraphProto& graph, const QuantLayer& layer, onnx::NodeProto& node, WeightForm form) {
  const auto [user, index] = bias_use(graph, layer, node);
  if (!user) return;
  onnx::TensorProto& bias = exclusive_initializer(graph, *user, index, layer.name + ".bias", "bias");
  const std::vector<float> values = tensor_to_floats(bias);
  const std::vector<float> deq = qdq_channel_values(dequant_scales(layer), static_cast<int64_t>(values.size()));
  std::vector<int32_t> q(values.size());
  std::vector<float> dequantized(values.size());
  for (size_t c = 0; c < values.size(); ++c) {
    const double scale = deq[deq.size() == 1 ? 0 : c];
    const double v = round_half_even(static_cast<double>(values[c]) / scale);
    if (!(v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max()))
      fail(ErrorCode::kRuntime, "layer '" + layer.name + "': bias quantization failed: bias[" + std::to_string(c) +
                                    "] = " + std::to_string(values[c]) + " divided by the dequant scale " +
                                    std::to_string(scale) + " does not fit in INT32");
    q[c] = static_cast<int32_t>(v);
    dequantized[c] = static_cast<float>(v * scale);
  }
  const std::string name = bias.name();
  remove_value_info(graph, name);
  if (form == WeightForm::kFloat) {
    set_float_tensor(bias, dequantized);
    return;
  }
  std::vector<int64_t> dims = {static_cast<int64_t>(q.size())};
  if (form == WeightForm::kUint8) {
    // Broadcast over [N, C, spatial...] of the ConvInteger result.
    const onnx::TensorProto* weight = resolve_constant(graph, node.input(1));
    dims.assign(static_cast<size_t>(weight->dims_size()), 1);
    dims[1] = static_cast<int64_t>(q.size());
  }
  std::string bytes(q.size() * sizeof(int32_t), '\0');
  std::memcpy(bytes.data(), q.data(), bytes.size());
  bias = integer_tensor(name, dims, onnx::TensorProto::INT32, std::move(bytes));
  if (form == WeightForm::kUint8) return;
  std::vector<float> scales = deq.size() == 1 ? deq : qdq_channel_values(deq, static_cast<int64_t>(q.size()));
  user->set_input(index, add_dequantize(graph, layer.name + ".bias_dequant", name, scales, 0, onnx::TensorProto::INT32,
                                        sizeof(int32_t)));
}

void quantize_parameters(onnx::GraphProto& graph, const QuantLayer& layer) {
  onnx::NodeProto& node = layer_node(graph, layer);
  if (node.op_type() == "AveragePool") return;
  WeightForm form = WeightForm::kInt8;
  if (node.op_type() == "ConvInteger") form = WeightForm::kUint8;
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
