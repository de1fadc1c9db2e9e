// ApplyDMQBalancer (docs/amct-reference.md#dmq-balancing): a layer with
// tensor_balance_factor s reads Mul(x, 1/s) instead of x. Its weight already
// carries x s from quantize_model, so the float result is unchanged and the
// quantized input is the balanced one the record's scale_d was calibrated on.
// The deploy and fake-quant models keep the Mul; the QDQ model runs the same
// pass on its own copy.
#include <cstring>
#include <string>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

// The constant's shape broadcasts along the input channels of the layer's
// input: [1, C, 1...] after the weight's rank, [1, C] for Gemm and MatMul
// (whose inputs keep channels last).
std::vector<int64_t> factor_shape(const QuantLayer& layer) {
  const auto channels = static_cast<int64_t>(layer.balance_factor.size());
  const size_t rank = layer.weight_dims.size();
  if (rank < 3) return {1, channels};
  std::vector<int64_t> shape(rank, 1);
  shape[1] = channels;
  return shape;
}

onnx::TensorProto inverse_factor_tensor(const QuantLayer& layer, const std::string& name) {
  std::vector<float> inverse;
  inverse.reserve(layer.balance_factor.size());
  for (float s : layer.balance_factor) inverse.push_back(1.0f / s);
  onnx::TensorProto tensor = make_float_tensor(name, factor_shape(layer), inverse);
  if (!layer.float16) return tensor;
  // A float16 layer computes in float16, so the Mul takes a float16 constant.
  std::string bits(inverse.size() * 2, '\0');
  for (size_t i = 0; i < inverse.size(); ++i) {
    const _Float16 h = static_cast<_Float16>(inverse[i]);
    std::memcpy(bits.data() + 2 * i, &h, 2);
  }
  tensor.set_data_type(onnx::TensorProto::FLOAT16);
  tensor.set_raw_data(bits);
  return tensor;
}

void insert_balance_mul(onnx::GraphProto& graph, const QuantLayer& layer) {
  onnx::NodeProto& node = layer_node(graph, layer);
  const std::string constant = layer.name + ".tensor_balance_factor";
  const std::string mul = layer.name + ".mul";
  onnx::NodeProto& value = add_node(graph, "Constant", constant, {}, {constant + ".output0"});
  auto* attr = value.add_attribute();
  attr->set_name("value");
  attr->set_type(onnx::AttributeProto::TENSOR);
  *attr->mutable_t() = inverse_factor_tensor(layer, constant);
  const std::string input = node.input(0);
  node.set_input(0, mul + ".output0");
  add_node(graph, "Mul", mul, {input, constant + ".output0"}, {mul + ".output0"});
}

}  // namespace

void apply_dmq_balancer_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers)
    if (!layer.balance_factor.empty()) insert_balance_mul(graph, layer);
}

}  // namespace amct
