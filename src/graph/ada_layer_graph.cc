#include "amct/ada_layer_graph.h"

#include <array>
#include <limits>

#include "amct/error.h"
#include "amct/layer_graph.h"
#include "amct/onnx_graph.h"

namespace amct {
namespace {

std::array<int64_t, 2> pair_attribute(const onnx::NodeProto& node, const std::string& name, int64_t fallback) {
  const std::vector<int64_t> values = get_ints_attribute(node, name);
  if (values.empty()) return {fallback, fallback};
  return {values[0], values.size() > 1 ? values[1] : values[0]};
}

// AMCT reconstructs through the single activation that consumes the layer's
// output; any other consumer (or a graph output) means the identity.
FollowingActivation following_activation(onnx::GraphProto& graph, const std::string& output) {
  FollowingActivation f;
  const std::vector<onnx::NodeProto*> consumers = find_consumers(graph, output);
  if (consumers.size() != 1 || is_graph_output(graph, output)) return f;
  const onnx::NodeProto& next = *consumers[0];
  using Kind = FollowingActivation::Kind;
  if (next.op_type() == "Relu") {
    f.kind = Kind::kRelu;
  } else if (next.op_type() == "Sigmoid") {
    f.kind = Kind::kSigmoid;
  } else if (next.op_type() == "Tanh") {
    f.kind = Kind::kTanh;
  } else if (next.op_type() == "LeakyRelu") {
    f.kind = Kind::kLeakyRelu;
    f.alpha = get_float_attribute(next, "alpha", 0.01f);
  } else if (next.op_type() == "Clip") {
    // min/max are inputs from opset 11, attributes before; a bound that is
    // not constant leaves the identity.
    f.low = get_float_attribute(next, "min", -std::numeric_limits<float>::infinity());
    f.high = get_float_attribute(next, "max", std::numeric_limits<float>::infinity());
    for (int i = 1; i <= 2 && i < next.input_size(); ++i) {
      if (next.input(i).empty()) continue;
      const onnx::TensorProto* bound = resolve_constant(graph, next.input(i));
      if (!bound) return f;
      const std::vector<float> value = tensor_to_floats(*bound);
      if (value.size() != 1) return f;
      (i == 1 ? f.low : f.high) = value[0];
    }
    f.kind = Kind::kClip;
  }
  return f;
}

}  // namespace

AdaLayerGraph ada_layer_graph(onnx::GraphProto& graph, const onnx::NodeProto& node, const std::vector<int64_t>& dims,
                              const std::string& layer) {
  const OpKind& kind = *node_kind(node);
  const std::string where = "layer '" + layer + "': ada_quantize ";
  AdaLayerGraph out;
  std::string output = node.output(0);
  if ((kind.layout == WeightLayout::kGemm || kind.layout == WeightLayout::kInOut) && dims.size() == 2) {
    out.shape.op = AdaLayerShape::Op::kLinear;
    out.transposed = kind.layout == WeightLayout::kInOut || get_int_attribute(node, "transB", 0) == 0;
    out.shape.weight_shape = out.transposed ? std::vector<int64_t>{dims[1], dims[0]} : dims;
  } else if ((kind.layout == WeightLayout::kOutFirst || kind.layout == WeightLayout::kDeconv) && dims.size() == 4) {
    const bool deconv = kind.layout == WeightLayout::kDeconv;
    out.shape.op = deconv ? AdaLayerShape::Op::kConvTranspose2d : AdaLayerShape::Op::kConv2d;
    out.shape.weight_shape = dims;
    const std::string auto_pad = get_string_attribute(node, "auto_pad", "NOTSET");
    if (auto_pad != "NOTSET")
      fail(ErrorCode::kRuntime, where + "needs explicit pads; its " + node.op_type() + " has auto_pad " + auto_pad);
    if (find_attribute(node, "output_shape"))
      fail(ErrorCode::kRuntime, where + "needs explicit pads; its ConvTranspose has output_shape");
    out.shape.groups = get_int_attribute(node, "group", 1);
    out.shape.strides = pair_attribute(node, "strides", 1);
    out.shape.dilations = pair_attribute(node, "dilations", 1);
    out.shape.output_padding = pair_attribute(node, "output_padding", 0);
    const std::vector<int64_t> pads = get_ints_attribute(node, "pads");
    if (pads.size() == 4) {
      out.shape.pads_begin = {pads[0], pads[1]};
      out.shape.pads_end = {pads[2], pads[3]};
    }
  } else {
    fail(ErrorCode::kRuntime, where + "supports Conv2d, ConvTranspose2d and Linear; its " + node.op_type() +
                                  " weight has shape " + dims_text(dims));
  }
  if (kind.bias_input >= 0) {
    if (node.input_size() > kind.bias_input && !node.input(kind.bias_input).empty())
      if (const onnx::TensorProto* t = resolve_constant(graph, node.input(kind.bias_input))) out.bias = tensor_to_floats(*t);
  } else if (const onnx::NodeProto* add = matmul_bias_add(graph, node)) {
    out.bias = tensor_to_floats(*resolve_constant(graph, add->input(bias_add_input_index(*add, output))));
    output = add->output(0);
  }
  out.activation = following_activation(graph, output);
  return out;
}

}  // namespace amct
