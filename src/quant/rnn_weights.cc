#include "amct/rnn_weights.h"

#include "amct/error.h"
#include "amct/layer_graph.h"
#include "amct/onnx_graph.h"
#include "amct/quant_format.h"
#include "amct/weight_quant.h"

namespace amct {
namespace {

// torch's gate k is ONNX's gate kTorchFromOnnx[k].
constexpr int64_t kLstmTorchFromOnnx[] = {0, 2, 3, 1};  // i,f,g,o <- i,o,f,c
constexpr int64_t kGruTorchFromOnnx[] = {1, 0, 2};      // r,z,n <- z,r,h

struct QuantizedTensor {
  std::vector<float> fake_quant;  // graph layout
  std::vector<float> scale;
  std::vector<int32_t> offset;
};

QuantizedTensor quantize_tensor(onnx::GraphProto& graph, const onnx::NodeProto& node, int index,
                                const LayerQuantConfig& config, const std::string& layer) {
  onnx::TensorProto* tensor = find_initializer(graph, node.input(index));
  if (!tensor)
    fail(ErrorCode::kRuntime, "layer '" + layer + "': its input " + std::to_string(index) +
                                  " is not an initializer of the graph");
  const std::vector<int64_t> dims = tensor_dims(*tensor);
  const ChannelMap channels = node_channel_map(node, dims);
  const QuantFormat format = QuantFormat::signed_bits(config.weight.num_bits);
  // The deploy model packs INT4 W and R two per byte along axis 2.
  if (format.bits() == 4 && dims[2] % 2 != 0)
    fail(ErrorCode::kRuntime, "layer '" + layer + "': INT4 weights are packed two per byte along axis 2 of W and R, "
                              "whose size " + std::to_string(dims[2]) + " (input " + std::to_string(index) +
                              ") is odd; set num_bits 8 in its weight_quant_params");
  QuantizedWeight q = make_weight_quantizer(config.weight, layer)
                          ->quantize(take_tensor_floats(*tensor), channels, config.weight.channel_wise, format);
  QuantizedTensor out;
  out.fake_quant = dequantize_weight(q.integers, channels, q.scale);
  out.scale = std::move(q.scale);
  out.offset = std::move(q.offset);
  set_float_tensor(*tensor, out.fake_quant);
  return out;
}

}  // namespace

std::vector<float> onnx_gates_to_torch_order(std::span<const float> values, std::string_view op_type, int64_t cols) {
  const std::span<const int64_t> order =
      op_type == "LSTM" ? std::span<const int64_t>(kLstmTorchFromOnnx) : std::span<const int64_t>(kGruTorchFromOnnx);
  const auto gates = static_cast<int64_t>(order.size());
  const int64_t size = static_cast<int64_t>(values.size());
  if (cols <= 0 || size % (gates * cols) != 0)
    invalid("internal error: an " + std::string(op_type) + " weight of " + std::to_string(size) +
            " values is not " + std::to_string(gates) + " gates of rows of " + std::to_string(cols));
  const int64_t gate_size = size / gates;
  std::vector<float> out(values.size());
  for (int64_t k = 0; k < gates; ++k)
    std::copy_n(values.begin() + order[k] * gate_size, gate_size, out.begin() + k * gate_size);
  return out;
}

QuantizedLayer quantize_rnn_weights(onnx::GraphProto& graph, const onnx::NodeProto& node, const LayerInfo& layer,
                                    const LayerQuantConfig& config, SingleLayerRecord& record,
                                    WeightsFingerprint& fingerprint) {
  const OpKind& kind = *node_kind(node);
  QuantizedTensor w = quantize_tensor(graph, node, kind.weight_input, config, layer.name);
  QuantizedTensor r = quantize_tensor(graph, node, kind.recurrent_input, config, layer.name);
  for (float s : w.scale) record.add_scale_w(s);
  for (int32_t o : w.offset) record.add_offset_w(o);
  for (float s : r.scale) record.add_scale_r(s);
  for (int32_t o : r.offset) record.add_offset_r(o);
  record.set_wts_type(QuantFormat::signed_bits(config.weight.num_bits).name());
  fingerprint.add_layer(layer.name, w.fake_quant);
  fingerprint.add_layer(layer.name + ".R", r.fake_quant);

  // W [1, G*H, I] and R [1, G*H, H]: torch holds them as [G*H, I] / [G*H, H].
  const std::vector<int64_t> w_dims = tensor_dims(*find_initializer(graph, node.input(kind.weight_input)));
  const std::vector<int64_t> r_dims = tensor_dims(*find_initializer(graph, node.input(kind.recurrent_input)));
  QuantizedLayer out;
  out.name = layer.name;
  out.module_type = layer.module_type;
  out.use = layer.use;
  const std::vector<float> w_torch = onnx_gates_to_torch_order(w.fake_quant, node.op_type(), w_dims[2]);
  out.weight.assign(reinterpret_cast<const char*>(w_torch.data()), w_torch.size() * sizeof(float));
  out.weight_shape = {w_dims[1], w_dims[2]};
  out.recurrent_weight = onnx_gates_to_torch_order(r.fake_quant, node.op_type(), r_dims[2]);
  out.recurrent_weight_shape = {r_dims[1], r_dims[2]};
  return out;
}

}  // namespace amct
