// GemmTransBOptimize (spec 7.2.1): quantized Gemm layers get their weight
// transposed offline to [K, N] and transB=0, so both outputs carry the weight
// in the layout the Ascend converter expects.
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

bool matches(const onnx::NodeProto& node) {
  return node.op_type() == "Gemm" && get_int_attribute(node, "transB", 0) != 0;
}

void transpose_weight(onnx::GraphProto& graph, onnx::NodeProto& gemm) {
  onnx::TensorProto& weight = exclusive_initializer(graph, gemm, 1, gemm.name() + ".weight", "weight");
  const int64_t rows = weight.dims(0);
  const int64_t cols = weight.dims(1);
  const std::vector<float> values = tensor_to_floats(weight);
  std::vector<float> transposed(values.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) transposed[c * rows + r] = values[r * cols + c];
  set_float_tensor(weight, transposed, {cols, rows});
  set_int_attribute(gemm, "transB", 0);
}

}  // namespace

void gemm_trans_b_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers) {
    onnx::NodeProto& node = layer_node(graph, layer);
    if (matches(node)) transpose_weight(graph, node);
  }
}

}  // namespace amct
