// QdqTensor (full-INT8 QDQ model only): every tensor of plan.tensor_ranges
// (qdq_tensors.h says which) gets QuantizeLinear "<t>.quant" and
// DequantizeLinear "<t>.dequant", read by all its uses except the layers'
// own QuantizeLinear nodes. ONNX Runtime then finds DequantizeLinear -> op ->
// QuantizeLinear around the ops between the layers and runs them as integer
// kernels.
//
// A tensor that also feeds a quantized layer is quantized with that layer's
// input factors (the record's scale_d / offset_d), reusing its
// "<L>.input_quant": one tensor, one grid, so Runtime needs no float
// requantization between an integer op and the layer. A tensor that is
// already the dequantized output of a requantized layer (qdq_output_pass) is
// left as it is.
#include <cstdint>
#include <string>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

// Whether `use` is the "<L>.input_quant" of a quantized layer reading `tensor`.
bool is_layer_quantize(const QuantPlan& plan, const onnx::NodeProto& use, const std::string& tensor) {
  return use.op_type() == "QuantizeLinear" && use.input(0) == tensor && layer_of_node(plan, use.name(), ".input_quant");
}

void quantize_tensor(onnx::GraphProto& graph, const GraphIndex& index, const QuantPlan& plan,
                     const std::string& tensor, const TensorRange& range) {
  const std::vector<onnx::NodeProto*> uses = index.consumers(tensor);
  if (const onnx::NodeProto* producer = index.producer(tensor); producer && producer->op_type() == "DequantizeLinear")
    return;
  const onnx::NodeProto* shared = nullptr;
  std::vector<onnx::NodeProto*> readers;
  for (onnx::NodeProto* use : uses) {
    if (!is_layer_quantize(plan, *use, tensor))
      readers.push_back(use);
    else if (!shared)
      shared = use;
  }
  if (readers.empty()) return;
  std::string quantized, scale, zero_point;
  if (shared) {
    quantized = shared->output(0);
    scale = shared->input(1);
    zero_point = shared->input(2);
  } else {
    const std::string quant = tensor + ".quant";
    scale = add_initializer(graph, make_float_tensor(quant + ".scale", {}, std::span<const float>(&range.scale, 1)));
    onnx::TensorProto zero;
    zero.set_name(quant + ".zero_point");
    zero.set_data_type(onnx::TensorProto::UINT8);
    // The sidecar's offset is on the signed 8-bit grid; UINT8 shifts it by 128.
    zero.set_raw_data(std::string(1, static_cast<char>(static_cast<uint8_t>(range.offset + 128))));
    zero_point = add_initializer(graph, std::move(zero));
    quantized = quant + ".output0";
    add_node(graph, "QuantizeLinear", quant, {tensor, scale, zero_point}, {quantized});
  }
  const std::string dequant = tensor + ".dequant";
  add_node(graph, "DequantizeLinear", dequant, {quantized, scale, zero_point}, {dequant + ".output0"});
  for (onnx::NodeProto* reader : readers)
    for (int i = 0; i < reader->input_size(); ++i)
      if (reader->input(i) == tensor) reader->set_input(i, dequant + ".output0");
}

}  // namespace

void qdq_tensor_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  if (plan.tensor_ranges.empty()) return;
  // Graph order (inputs, then node outputs), for a stable result.
  std::vector<std::string> tensors;
  for (const auto& input : graph.input())
    if (plan.tensor_ranges.count(input.name())) tensors.push_back(input.name());
  for (const auto& node : graph.node())
    for (const auto& output : node.output())
      if (plan.tensor_ranges.count(output)) tensors.push_back(output);
  // Each tensor's uses are only those of the graph before the pass and the
  // nodes it adds for that tensor, so one index serves all of them.
  const GraphIndex index(graph);
  for (const std::string& tensor : tensors) {
    const TensorRange& range = plan.tensor_ranges.at(tensor);
    if (range.bits == 8) quantize_tensor(graph, index, plan, tensor, range);
  }
}

}  // namespace amct
