// GemmTransBOptimize (docs/amct-reference.md#gemmtransb): quantized Gemm layers get their weight
// transposed offline to [K, N] and transB=0, so both outputs carry the weight
// in the layout the Ascend converter expects.
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"
#include "amct/weight_layout.h"

namespace amct {
namespace {

bool matches(const onnx::NodeProto& node) {
  return node.op_type() == "Gemm" && get_int_attribute(node, "transB", 0) != 0;
}

void transpose_weight(onnx::GraphProto& graph, onnx::NodeProto& gemm) {
  onnx::TensorProto& weight = exclusive_initializer(graph, gemm, 1, gemm.name() + ".weight", "weight");
  const int64_t rows = weight.dims(0);
  const int64_t cols = weight.dims(1);
  // Where the weight lies: a weight of GBs is held once.
  transpose_2d_in_place(float_values_in_place(weight), rows, cols);
  weight.set_dims(0, cols);
  weight.set_dims(1, rows);
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
