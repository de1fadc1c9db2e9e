// QdqDeconvToConv: ONNX Runtime has no integer ConvTranspose kernel on CPU,
// so a quantized ConvTranspose whose kernel equals its stride (the usual
// upsampling layer: no overlap between output blocks) becomes the 1x1 Conv
// "<L>" with Cout*s*s output channels plus DepthToSpace "<L>.depth_to_space"
// (blocksize s, CRD). That Conv runs as QLinearConv and DepthToSpace moves
// 8-bit data. Groups carry over: Conv groups own contiguous output channels,
// which CRD maps back to contiguous deconvolution channels.
#include <cstdint>
#include <string>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

bool all_equal(const std::vector<int64_t>& values, int64_t expected) {
  for (int64_t v : values)
    if (v != expected) return false;
  return true;
}

// The block size s when the deconvolution is a pure block upsampling, else 0.
int64_t block_size(const onnx::GraphProto& graph, const onnx::NodeProto& node) {
  const onnx::TensorProto* weight = resolve_constant(graph, node.input(1));
  if (!weight || weight->dims_size() != 4) return 0;
  const int64_t s = weight->dims(2);
  if (weight->dims(3) != s || s < 1) return 0;
  const std::vector<int64_t> strides = get_ints_attribute(node, "strides");
  if (strides.size() != 2 || !all_equal(strides, s)) return 0;
  const std::string auto_pad = get_string_attribute(node, "auto_pad", "NOTSET");
  if (auto_pad != "NOTSET" && auto_pad != "VALID") return 0;
  if (!all_equal(get_ints_attribute(node, "pads"), 0) || !all_equal(get_ints_attribute(node, "dilations"), 1) ||
      !all_equal(get_ints_attribute(node, "output_padding"), 0) || find_attribute(node, "output_shape"))
    return 0;
  const std::vector<int64_t> kernel = get_ints_attribute(node, "kernel_shape");
  if (!kernel.empty() && !all_equal(kernel, s)) return 0;
  return s;
}

void regroup(onnx::GraphProto& graph, const QuantLayer& layer, onnx::NodeProto& node, int64_t s) {
  const int64_t groups = get_int_attribute(node, "group", 1);
  onnx::TensorProto& weight = exclusive_initializer(graph, node, 1, layer.name + ".weight", "weight");
  const std::vector<float> w = tensor_to_floats(weight);
  const int64_t in_channels = weight.dims(0);
  const int64_t group_out = weight.dims(1);
  const int64_t group_in = in_channels / groups;
  const int64_t block = s * s;
  // W'[((g * group_out + co) * s + a) * s + b, ci] = W[g * group_in + ci, co, a, b]
  std::vector<float> conv_weight(w.size());
  for (int64_t in = 0; in < in_channels; ++in)
    for (int64_t co = 0; co < group_out; ++co)
      for (int64_t k = 0; k < block; ++k) {
        const int64_t g = in / group_in;
        const int64_t out = (g * group_out + co) * block + k;
        conv_weight[static_cast<size_t>(out * group_in + in % group_in)] =
            w[static_cast<size_t>((in * group_out + co) * block + k)];
      }
  set_float_tensor(weight, conv_weight, {groups * group_out * block, group_in, 1, 1});
  remove_value_info(graph, weight.name());

  if (node.input_size() > 2 && !node.input(2).empty()) {
    onnx::TensorProto& bias = exclusive_initializer(graph, node, 2, layer.name + ".bias", "bias");
    const std::vector<float> b = tensor_to_floats(bias);
    std::vector<float> repeated;
    repeated.reserve(b.size() * static_cast<size_t>(block));
    for (float v : b) repeated.insert(repeated.end(), static_cast<size_t>(block), v);
    set_float_tensor(bias, repeated, {static_cast<int64_t>(repeated.size())});
    remove_value_info(graph, bias.name());
  }

  node.set_op_type("Conv");
  for (const char* attribute : {"strides", "pads", "dilations", "output_padding", "kernel_shape", "auto_pad"})
    remove_attribute(node, attribute);
  const std::string name = layer.name + ".depth_to_space";
  const std::string result = take_output(graph, node, 0, name + ".input");
  onnx::NodeProto& depth_to_space = add_node(graph, "DepthToSpace", name, {name + ".input"}, {result});
  set_int_attribute(depth_to_space, "blocksize", s);
  set_string_attribute(depth_to_space, "mode", "CRD");
}

}  // namespace

void qdq_deconv_to_conv_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers) {
    if (layer.op_type != "ConvTranspose" || !qdq_quantizes(layer)) continue;
    onnx::NodeProto& node = layer_node(graph, layer);
    if (const int64_t s = block_size(graph, node)) regroup(graph, layer, node, s);
  }
}

}  // namespace amct
