// QdqInput: the input of every quantized layer goes through QuantizeLinear
// "<L>.input_quant" (scale_d, offset_d + 128 as a UINT8 zero point) and, for
// QDQ layers, a DequantizeLinear "<L>.input_dequant" of its own, the pattern
// ONNX Runtime and TensorRT fuse. A ConvInteger layer (qdq_output_pass) reads
// the quantized tensor and the zero point directly. Layers that quantize one
// tensor with equal factors share one QuantizeLinear, as AMCT's QuantFusion
// shares one AscendQuant; an input that is already the dequantized output of
// a layer requantized with equal factors is used as it is.
//
// QuantizeLinear divides by the scale where AMCT's fake-quant model
// multiplies by float32(1 / scale_d); the two round differently only for
// values within one float32 ulp of a rounding boundary, one step apart.
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <tuple>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

uint8_t zero_point_value(const onnx::TensorProto& tensor) {
  return tensor.raw_data().empty() ? static_cast<uint8_t>(tensor.int32_data(0))
                                   : static_cast<uint8_t>(tensor.raw_data()[0]);
}

// The DequantizeLinear producing `tensor` if it has the input factors of `layer`.
onnx::NodeProto* equal_dequantize(onnx::GraphProto& graph, const std::string& tensor, const QuantLayer& layer) {
  onnx::NodeProto* producer = find_producer(graph, tensor);
  if (!producer || producer->op_type() != "DequantizeLinear" || producer->input_size() < 3) return nullptr;
  const onnx::TensorProto* scale = resolve_constant(graph, producer->input(1));
  const onnx::TensorProto* zero_point = resolve_constant(graph, producer->input(2));
  if (!scale || !zero_point || zero_point->data_type() != onnx::TensorProto::UINT8 || tensor_numel(*scale) != 1 ||
      tensor_numel(*zero_point) != 1)
    return nullptr;
  const auto expected_zero = static_cast<uint8_t>(layer.data_offset + layer.act_format.unsigned_shift());
  return tensor_to_floats(*scale)[0] == layer.data_scale && zero_point_value(*zero_point) == expected_zero ? producer
                                                                                                           : nullptr;
}

using QuantKey = std::tuple<std::string, float, int32_t>;

struct SharedQuant {
  std::string output;
  QdqParams params;
};

void quantize_input(onnx::GraphProto& graph, const QuantLayer& layer, std::map<QuantKey, SharedQuant>& shared) {
  onnx::NodeProto& node = layer_node(graph, layer);
  const bool integer = node.op_type() == "ConvInteger";
  const std::string input = node.input(0);
  const QuantKey key{input, layer.data_scale, layer.data_offset};
  auto it = shared.find(key);
  if (it == shared.end()) {
    if (onnx::NodeProto* dequantize = equal_dequantize(graph, input, layer)) {
      if (!integer) return;
      node.set_input(0, dequantize->input(0));
      node.add_input(dequantize->input(2));
      return;
    }
    const QdqParams params = qdq_input_params(graph, layer);
    const std::string quant = layer.name + ".input_quant";
    add_node(graph, "QuantizeLinear", quant, {input, params.scale, params.zero_point}, {quant + ".output0"});
    it = shared.emplace(key, SharedQuant{quant + ".output0", params}).first;
  }
  const QdqParams& params = it->second.params;
  if (integer) {
    node.set_input(0, it->second.output);
    node.add_input(params.zero_point);
    return;
  }
  const std::string dequant = layer.name + ".input_dequant";
  add_node(graph, "DequantizeLinear", dequant, {it->second.output, params.scale, params.zero_point},
           {dequant + ".output0"});
  node.set_input(0, dequant + ".output0");
}

}  // namespace

void qdq_input_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  std::map<QuantKey, SharedQuant> shared;
  for (const auto& layer : plan.layers)
    if (qdq_quantizes(layer)) quantize_input(graph, layer, shared);
}

}  // namespace amct
