#include <cmath>
#include <unordered_set>

#include "amct/error.h"
#include "amct/layer_kind.h"
#include "amct/onnx_graph.h"
#include "amct/quantize.h"

namespace amct {
namespace {

// A conv used only through its weight is left alone: its functional call may
// not read the module's bias, which is where the fused bias would go.
bool is_fusable_conv(const ModuleInfo& m, const ModelInfo& info) {
  const ModuleKind* kind = find_module_kind(m.layer_type);
  const LayerInfo* layer = info.find_layer(m.name);
  return kind && kind->fusable_with_bn && m.padding_mode == "zeros" && (!layer || layer->use != LayerUse::kWeightRead);
}

std::vector<float> constant_values(const onnx::GraphProto& graph, const std::string& tensor) {
  const onnx::TensorProto* t = resolve_constant(graph, tensor);
  return t ? tensor_to_floats(*t) : std::vector<float>{};
}

bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

}  // namespace

std::vector<FusedBatchNorm> fuse_conv_batchnorm(onnx::GraphProto& graph, const ModelInfo& info,
                                                const std::vector<std::string>& skip_fusion_layers,
                                                std::vector<std::string>& notes) {
  const std::unordered_set<std::string> skipped(skip_fusion_layers.begin(), skip_fusion_layers.end());
  std::vector<FusedBatchNorm> fused;
  std::vector<std::string> removed_nodes;

  for (auto& bn : *graph.mutable_node()) {
    if (bn.op_type() != "BatchNormalization" || bn.input_size() != 5) continue;
    const ModuleInfo* bn_module = info.find_module(bn.name());
    if (!bn_module) continue;
    onnx::NodeProto* conv = find_producer(graph, bn.input(0));
    const OpKind* conv_kind = conv ? find_op_kind(conv->op_type()) : nullptr;
    if (!conv_kind || !conv_kind->fusable_with_bn || conv->input_size() < 2) continue;
    const ModuleInfo* conv_module = info.find_module(conv->name());
    if (!conv_module || !is_fusable_conv(*conv_module, info) || skipped.count(conv->name())) continue;
    if (find_consumers(graph, conv->output(0)).size() != 1 || is_graph_output(graph, conv->output(0))) continue;
    if (bn_module->training) {
      notes.push_back("BatchNorm '" + bn.name() + "' is in training mode; it was not fused into '" + conv->name() +
                      "' (call model.eval() before quantizing)");
      continue;
    }
    if (!bn_module->affine || !bn_module->track_running_stats || bn.output_size() != 1) continue;
    onnx::TensorProto* weight = find_initializer(graph, conv->input(1));
    if (!weight || find_consumers(graph, weight->name()).size() != 1) continue;

    const auto gamma = constant_values(graph, bn.input(1));
    const auto beta = constant_values(graph, bn.input(2));
    const auto mean = constant_values(graph, bn.input(3));
    const auto var = constant_values(graph, bn.input(4));
    const int64_t cout = weight->dims(0);
    const auto channels = static_cast<size_t>(cout);
    if (gamma.size() != channels || beta.size() != channels || mean.size() != channels || var.size() != channels)
      continue;
    const float eps = get_float_attribute(bn, "epsilon", 1e-5f);

    std::vector<float> w = tensor_to_floats(*weight);
    const bool has_bias = conv->input_size() > 2 && !conv->input(2).empty();
    std::vector<float> b = has_bias ? constant_values(graph, conv->input(2)) : std::vector<float>(channels, 0.0f);
    if (b.size() != channels) continue;
    const size_t per_channel = w.size() / channels;
    for (size_t c = 0; c < channels; ++c) {
      const float factor = gamma[c] / std::sqrt(var[c] + eps);
      for (size_t i = 0; i < per_channel; ++i) w[c * per_channel + i] *= factor;
      b[c] = (b[c] - mean[c]) * factor + beta[c];
    }
    if (!all_finite(w) || !all_finite(b)) {
      notes.push_back("fusing BatchNorm '" + bn.name() + "' into '" + conv->name() +
                      "' gives non-finite values; the pair was left unfused");
      continue;
    }

    set_float_tensor(*weight, w);
    const std::string bias_name = has_bias && find_initializer(graph, conv->input(2)) &&
                                          find_consumers(graph, conv->input(2)).size() == 1
                                      ? conv->input(2)
                                      : conv->name() + ".bias";
    if (onnx::TensorProto* bias = find_initializer(graph, bias_name)) {
      set_float_tensor(*bias, b, {cout});
    } else {
      *graph.add_initializer() = make_float_tensor(bias_name, {cout}, b);
    }
    if (conv->input_size() > 2) {
      conv->set_input(2, bias_name);
    } else {
      conv->add_input(bias_name);
    }
    conv->set_output(0, bn.output(0));
    removed_nodes.push_back(bn.name());
    fused.push_back({conv->name(), bn.name()});
  }

  // Drop the BN nodes, then the constants nobody reads any more.
  remove_nodes(graph, removed_nodes);
  remove_dead_nodes(graph);
  remove_unread_initializers(graph);
  return fused;
}

}  // namespace amct
