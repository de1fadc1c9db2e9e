// InsertBiasQuant (spec 7.2.7, 6.8): a quantized layer's bias becomes INT32
// in the accumulator's scale, round(b / (scale_w * scale_d)).
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "amct/calib/quant_math.h"
#include "amct/error.h"
#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

// The node that reads the bias and at which input.
struct BiasUse {
  onnx::NodeProto* node = nullptr;
  int index = 0;
};

BiasUse find_bias_use(onnx::GraphProto& graph, onnx::NodeProto& layer) {
  if (layer.op_type() == "AveragePool") return {};
  if (layer.op_type() == "MatMul") {
    onnx::NodeProto* add = matmul_bias_add(graph, layer);
    return add ? BiasUse{add, bias_add_input_index(*add, layer.output(0))} : BiasUse{};
  }
  if (layer.input_size() < 3 || layer.input(2).empty()) return {};
  return {&layer, 2};
}

std::vector<int32_t> quantize_values(const QuantLayer& layer, const std::vector<float>& bias) {
  const std::vector<float> deq = dequant_scales(layer);
  if (deq.size() != 1 && deq.size() != bias.size())
    invalid("layer '" + layer.name + "': the bias has " + std::to_string(bias.size()) + " values; expected " +
            std::to_string(deq.size()) + ", one per output channel of scale_w");
  std::vector<int32_t> out(bias.size());
  for (size_t c = 0; c < bias.size(); ++c) {
    const double scale = deq[deq.size() == 1 ? 0 : c];
    const double q = round_half_even(static_cast<double>(bias[c]) / scale);
    if (!(q >= std::numeric_limits<int32_t>::min() && q <= std::numeric_limits<int32_t>::max()))
      fail(ErrorCode::kRuntime, "layer '" + layer.name + "': bias quantization failed: bias[" + std::to_string(c) +
                                    "] = " + std::to_string(bias[c]) + " divided by the dequant scale " +
                                    std::to_string(scale) + " does not fit in INT32");
    out[c] = static_cast<int32_t>(q);
  }
  return out;
}

// INT4 activations: AMCT feeds the INT32 bias through a Cast(to=FLOAT)
// "<L>.bias_quant" in the deploy model (spec 6.10).
void insert_bias_cast(onnx::GraphProto& graph, const QuantLayer& layer, BiasUse use) {
  const std::string name = layer.name + ".bias_quant";
  const std::string bias = use.node->input(use.index);
  use.node->set_input(use.index, name + ".output0");
  set_int_attribute(add_node(graph, "Cast", name, {bias}, {name + ".output0"}), "to", onnx::TensorProto::FLOAT);
}

void quantize_bias(onnx::GraphProto& graph, const QuantLayer& layer) {
  const BiasUse use = find_bias_use(graph, layer_node(graph, layer));
  if (!use.node) return;
  onnx::TensorProto& bias = exclusive_initializer(graph, *use.node, use.index, layer.name + ".bias", "bias");
  const std::vector<int32_t> values = quantize_values(layer, tensor_to_floats(bias));
  const std::string name = bias.name();
  const std::vector<int64_t> dims = tensor_dims(bias);
  bias.Clear();
  bias.set_name(name);
  for (auto d : dims) bias.add_dims(d);
  bias.set_data_type(onnx::TensorProto::INT32);
  for (int32_t v : values) bias.add_int32_data(v);
  if (layer.act_bits == 4) insert_bias_cast(graph, layer, use);
}

}  // namespace

void insert_bias_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers) quantize_bias(graph, layer);
}

}  // namespace amct
