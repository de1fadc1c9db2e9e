// ReplaceDequant (docs/amct-reference.md#fake-quant-model): each AscendDequant becomes a Mul by its float32
// dequant scales, shaped to broadcast along the channel axis of the output.
#include <string>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

struct DequantNode {
  std::string name, input, output, param;
};

// [1,C,1,1] for 2-D convolutions, [1,C,1,1,1] for 3-D, [1,C,1] for 1-D, else
// [1,C] (Gemm, MatMul, AveragePool; C = 1 per tensor), which broadcasts along
// the last axis of a MatMul's N-D output.
std::vector<int64_t> scale_dims(const QuantLayer* layer, int64_t channels) {
  const size_t rank = layer ? layer->weight_dims.size() : 0;
  std::vector<int64_t> dims = {1, channels};
  if (rank >= 3 && rank <= 5) dims.resize(rank, 1);
  return dims;
}

void build_fake_dequant(onnx::GraphProto& graph, const DequantNode& d, const QuantLayer* layer) {
  std::vector<float> scales;
  for (uint64_t word : find_initializer(graph, d.param)->uint64_data()) scales.push_back(unpack_dequant_scale(word));
  const std::string base = layer ? layer->name : d.name;
  const std::string dqscale = base + ".fakedequant.dqscale";
  onnx::NodeProto& constant = add_node(graph, "Constant", dqscale, {}, {dqscale + ".output0"});
  auto* value = constant.add_attribute();
  value->set_name("value");
  value->set_type(onnx::AttributeProto::TENSOR);
  *value->mutable_t() = make_float_tensor(dqscale, scale_dims(layer, static_cast<int64_t>(scales.size())), scales);

  const std::string mul = base + ".fakedequant.mul";
  if (!(layer && layer->float16)) {
    add_node(graph, "Mul", mul, {d.input, dqscale + ".output0"}, {d.output});
    return;
  }
  // float16 layers return to float16 after the float32 integer arithmetic.
  add_node(graph, "Mul", mul, {d.input, dqscale + ".output0"}, {mul + ".output0"});
  const std::string cast = base + ".fakedequant.cast";
  set_int_attribute(add_node(graph, "Cast", cast, {mul + ".output0"}, {d.output}), "to", onnx::TensorProto::FLOAT16);
}

}  // namespace

void replace_dequant_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  std::vector<DequantNode> dequants;
  for (const auto& node : graph.node())
    if (node.op_type() == "AscendDequant")
      dequants.push_back({node.name(), node.input(0), node.output(0), node.input(1)});
  std::vector<std::string> replaced;
  for (const auto& d : dequants) {
    build_fake_dequant(graph, d, layer_of_node(plan, d.name, ".dequant"));
    remove_initializer(graph, d.param);
    replaced.push_back(d.name);
  }
  remove_nodes(graph, replaced);
}

}  // namespace amct
