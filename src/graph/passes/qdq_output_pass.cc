// QdqOutput: what happens to the float result of each quantized layer.
//
// ONNX Runtime fuses DequantizeLinear -> Conv/Gemm -> QuantizeLinear into
// QLinearConv / QGemm only when the layer's output is requantized, and the
// record holds input factors only. So:
//  1. every use of the result reaches quantized layers with one common
//     (scale_d, offset_d) through ops that commute with quantization (Relu,
//     MaxPool, reshaping): the result is requantized with those factors,
//     QuantizeLinear "<L>.output_quant" + DequantizeLinear "<L>.output_dequant".
//     The consumer would quantize the same values with the same factors, so
//     this adds no error (Relu(x) quantized == max(quantized x, zero point)).
//  2. Gemm / MatMul otherwise: nothing; ONNX Runtime runs QGemm with a float
//     output, exactly AMCT's dequantized result.
//  3. AveragePool otherwise: requantized with its own input factors; an
//     average stays inside the input range, so the only change is rounding
//     to that grid (at most half a step).
//  4. Conv otherwise (e.g. into a residual Add or a graph output): an output
//     scale would have to be invented, so the layer becomes the integer form
//     of AMCT's deploy model: ConvInteger (UINT8 x UINT8 weight with zero
//     point 128, the fast MLAS path) -> Add "<L>.bias_add" of the INT32 bias
//     -> Cast "<L>.accumulator_cast" -> Mul "<L>.dequant" by
//     float32(scale_w * scale_d). The integers and the dequantization are
//     those of the fake-quant model.
// A ConvTranspose that QdqDeconvToConv could not regroup has no integer
// kernel in ONNX Runtime and keeps a float result.
#include <string>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

// Ops y = f(x) with quantize(f(x)) == f(quantize(x)) for the same factors:
// monotone and value-preserving, or pure data movement.
bool commutes_with_quantization(const onnx::NodeProto& node) {
  static const char* const kOps[] = {"Relu",      "Reshape", "Flatten",      "Identity",    "Squeeze",
                                     "Unsqueeze", "Transpose", "DepthToSpace", "SpaceToDepth"};
  for (const char* op : kOps)
    if (node.op_type() == op) return true;
  return node.op_type() == "MaxPool" && node.output_size() == 1;
}

bool same_factors(const QuantLayer& a, const QuantLayer& b) {
  return a.data_scale == b.data_scale && a.data_offset == b.data_offset;
}

// The quantized layer whose input factors every use of `tensor` ends in, or
// nullptr when some use leads elsewhere or the factors differ.
const QuantLayer* common_consumer(onnx::GraphProto& graph, const QuantPlan& plan, const std::string& tensor) {
  if (is_graph_output(graph, tensor)) return nullptr;
  const auto consumers = find_consumers(graph, tensor);
  if (consumers.empty()) return nullptr;
  const QuantLayer* found = nullptr;
  for (onnx::NodeProto* consumer : consumers) {
    for (int i = 1; i < consumer->input_size(); ++i)
      if (consumer->input(i) == tensor) return nullptr;
    const QuantLayer* next = plan.find(consumer->name());
    if (next && !qdq_quantizes(*next)) return nullptr;
    if (!next) {
      if (!commutes_with_quantization(*consumer)) return nullptr;
      next = common_consumer(graph, plan, consumer->output(0));
    }
    if (!next || (found && !same_factors(*found, *next))) return nullptr;
    found = next;
  }
  return found;
}

void requantize_output(onnx::GraphProto& graph, const QuantLayer& layer, onnx::NodeProto& result,
                       const QdqParams& params) {
  const std::string quant = layer.name + ".output_quant";
  const std::string dequant = layer.name + ".output_dequant";
  const std::string original = take_output(graph, result, 0, layer.name + ".output");
  add_node(graph, "QuantizeLinear", quant, {layer.name + ".output", params.scale, params.zero_point},
           {quant + ".output0"});
  add_node(graph, "DequantizeLinear", dequant, {quant + ".output0", params.scale, params.zero_point}, {original});
}

void to_conv_integer(onnx::GraphProto& graph, const QuantLayer& layer, onnx::NodeProto& node) {
  const std::string bias = node.input_size() > 2 ? node.input(2) : "";
  const onnx::TensorProto* weight = resolve_constant(graph, node.input(1));
  const int64_t channels = weight->dims(0);
  const int rank = weight->dims_size();
  node.set_op_type("ConvInteger");
  while (node.input_size() > 2) node.mutable_input()->RemoveLast();

  std::string accumulator = layer.name + ".accumulator";
  const std::string original = take_output(graph, node, 0, accumulator);
  if (!bias.empty()) {
    const std::string add = layer.name + ".bias_add";
    add_node(graph, "Add", add, {accumulator, bias}, {add + ".output0"});
    accumulator = add + ".output0";
  }
  const std::string cast = layer.name + ".accumulator_cast";
  set_int_attribute(add_node(graph, "Cast", cast, {accumulator}, {cast + ".output0"}), "to",
                    onnx::TensorProto::FLOAT);
  std::vector<int64_t> dims(static_cast<size_t>(rank), 1);
  dims[1] = channels;
  const std::string dequant = layer.name + ".dequant";
  const std::vector<float> scales = qdq_channel_values(dequant_scales(layer), channels);
  add_initializer(graph, make_float_tensor(dequant + ".scale", scales.size() == 1 ? std::vector<int64_t>{} : dims,
                                           scales));
  add_node(graph, "Mul", dequant, {cast + ".output0", dequant + ".scale"}, {original});
}

void rewrite_output(onnx::GraphProto& graph, const QuantPlan& plan, const QuantLayer& layer) {
  onnx::NodeProto& node = layer_node(graph, layer);
  onnx::NodeProto& result = qdq_result_node(graph, node);
  if (const QuantLayer* consumer = common_consumer(graph, plan, result.output(0))) {
    requantize_output(graph, layer, result, qdq_input_params(graph, *consumer));
  } else if (node.op_type() == "AveragePool") {
    requantize_output(graph, layer, result, qdq_input_params(graph, layer));
  } else if (node.op_type() == "Conv") {
    to_conv_integer(graph, layer, node);
  }
}

}  // namespace

void qdq_output_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers)
    if (qdq_quantizes(layer)) rewrite_output(graph, plan, layer);
}

}  // namespace amct
