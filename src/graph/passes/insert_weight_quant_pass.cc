// InsertWeightQuant (spec 7.2.4): the float weights of the modified ONNX (on
// the ARQ grid already) become the INT8 integers clamp(round(w / scale_w)).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "amct/calib/quant_math.h"
#include "amct/error.h"
#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

// Output channel of each weight element, the axis scale_w runs along. A
// ConvTranspose weight [Cin, Cout/g, k...] is indexed as if regrouped to
// [Cout, Cin/g, k...] (spec 6.4) without moving any data.
std::vector<int64_t> output_channels(const QuantLayer& layer, const std::vector<int64_t>& dims, int64_t groups) {
  int64_t numel = 1;
  for (auto d : dims) numel *= d;
  std::vector<int64_t> channel(static_cast<size_t>(numel), 0);
  if (layer.weight_scale.size() == 1) return channel;
  const int64_t kernel = numel / (dims[0] * dims[1]);
  for (int64_t i = 0; i < numel; ++i) {
    if (layer.op_type == "ConvTranspose") {
      const int64_t in_channel = i / (dims[1] * kernel);
      const int64_t local_out = (i / kernel) % dims[1];
      channel[i] = (in_channel / (dims[0] / groups)) * dims[1] + local_out;
    } else {
      channel[i] = i / (dims[1] * kernel);
    }
  }
  return channel;
}

void quantize_weight(onnx::GraphProto& graph, const QuantLayer& layer) {
  onnx::NodeProto& node = layer_node(graph, layer);
  onnx::TensorProto& weight = exclusive_initializer(graph, node, 1, layer.name + ".weight", "weight");
  const std::vector<float> values = tensor_to_floats(weight);
  const std::vector<int64_t> dims = tensor_dims(weight);
  const std::vector<int64_t> channel = output_channels(layer, dims, get_int_attribute(node, "group", 1));
  const auto lo = static_cast<float>(quant_min(layer.weight_bits));
  const auto hi = static_cast<float>(quant_max(layer.weight_bits));
  std::string bytes(values.size(), '\0');
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i]))
      invalid("layer '" + layer.name + "': weight '" + weight.name() + "' contains inf or NaN at element " +
              std::to_string(i) + "; expected finite values");
    // float32 division, as AMCT does it on the float weights.
    const float q = round_half_even(values[i] / layer.weight_scale[static_cast<size_t>(channel[i])]);
    bytes[i] = static_cast<char>(static_cast<int8_t>(std::clamp(q, lo, hi)));
  }
  const std::string name = weight.name();
  weight.Clear();
  weight.set_name(name);
  for (auto d : dims) weight.add_dims(d);
  weight.set_data_type(onnx::TensorProto::INT8);
  weight.set_raw_data(std::move(bytes));
}

}  // namespace

void insert_weight_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers)
    if (layer.op_type != "AveragePool") quantize_weight(graph, layer);
}

}  // namespace amct
