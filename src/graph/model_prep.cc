#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "amct/error.h"
#include "amct/layer_graph.h"
#include "amct/model_prep.h"
#include "amct/onnx_graph.h"
#include "amct/onnx_validate.h"

namespace amct {
namespace {

// Module classes that belong to AMCT's (or our) quantization machinery: a
// model holding one was already prepared for quantization.
const std::vector<std::string>& quantization_module_types() {
  static const std::vector<std::string> types = {
      "IFMR",           "HFMG",        "Recorder",         "AscendQuant",   "AscendDeQuant",
      "RetrainQuant",   "RNNRetrainQuant", "MarkedQuantizableModule", "QuantIdentity", "SelectiveMaskGen",
      "DMQBalancer",    "Conv2dQAT",   "LinearQAT",        "LSTMQAT",       "GRUQAT",
      "OFMRQuant",      "ConvTranspose1dQAT", "CalibrationWrapper"};
  return types;
}

// Fills the shape facts of a layer from its node and weight.
void describe_layer(const onnx::GraphProto& graph, const onnx::NodeProto& node, LayerInfo& layer) {
  const OpKind* kind = node_kind(node);
  if (!kind) return;
  layer.groups = get_int_attribute(node, "group", 1);
  if (kind->bias_input >= 0)
    layer.has_bias = node.input_size() > kind->bias_input && !node.input(kind->bias_input).empty();
  const onnx::TensorProto* weight = layer_weight(graph, node);
  if (!weight || weight->dims_size() < kind->min_weight_rank || weight->dims_size() > kind->max_weight_rank) return;
  try {
    const ChannelMap channels = node_channel_map(node, tensor_dims(*weight));
    layer.cin = channels.input_channels();
    layer.cout = channels.channels();
  } catch (const Error&) {
    // support_problem() reports the unfit weight.
  }
}

// A module whose own call is not in the graph may still run: its weight can
// be read directly, as F.linear(x, self.qkv.weight) or MultiheadAttention's
// out_proj do. Say which, since "not executed" would be false then.
std::string not_called_reason(const onnx::GraphProto& graph, const ModuleInfo& module) {
  if (module.has_weight) {
    const std::string weight = module.name + ".weight";
    for (const auto& node : graph.node())
      for (const auto& input : node.input())
        if (input == weight)
          return "forward() does not call the module, but node '" + node.name() + "' (" + node.op_type() +
                 ") uses its weight directly (a functional call such as F.linear, or nn.MultiheadAttention's "
                 "out_proj); layers used through their weight are not quantized";
  }
  return "the module is not executed by forward() on input_data";
}

// Why a module of a quantizable class cannot be quantized ("" if it can).
std::string support_problem(const onnx::GraphProto& graph, const ModuleInfo& module, const std::set<std::string>& reused,
                            const std::map<int64_t, int>& weight_users) {
  const ModuleKind* kind = find_module_kind(module.type);
  if (kind && is_recurrent(*kind))
    return module.type + " layers are not supported yet; the layer stays in float";
  if (kind && kind->has_padding_mode && module.padding_mode != "zeros")
    return "padding_mode '" + module.padding_mode + "' is not supported (only 'zeros')";
  if (module.type == "Conv3d" && !module.dilation.empty() && module.dilation[0] != 1)
    return "Conv3d with dilation[0] != 1 is not supported";
  if (reused.count(module.name)) return "the module is called more than once in forward()";
  const onnx::NodeProto* node = find_node(graph, module.name);
  if (!node) return not_called_reason(graph, module);
  if (module.has_weight && weight_users.count(module.weight_id) && weight_users.at(module.weight_id) > 1)
    return "its weight is shared with another layer";
  if (!exports_to(*kind, node->op_type()))
    return "it runs as an ONNX " + node->op_type() + " node, which is not how a " + module.type + " is quantized";
  if (const std::string reason = unquantizable_reason(graph, *node); !reason.empty()) return reason;
  return "";
}

}  // namespace

std::vector<ModuleInfo> parse_module_list(const std::string& json_text) {
  std::vector<ModuleInfo> modules;
  const auto json = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_array()) invalid("internal: the module list must be a JSON array");
  for (const auto& item : json) {
    ModuleInfo m;
    m.name = item.value("name", "");
    m.type = item.value("type", "");
    m.padding_mode = item.value("padding_mode", "zeros");
    m.dilation = item.value("dilation", std::vector<int64_t>{});
    m.weight_id = item.value("weight_id", int64_t{0});
    m.has_weight = item.value("has_weight", false);
    m.has_bias = item.value("has_bias", false);
    m.training = item.value("training", false);
    m.affine = item.value("affine", true);
    m.track_running_stats = item.value("track_running_stats", true);
    m.dtype = item.value("dtype", "float");
    m.num_layers = item.value("num_layers", int64_t{1});
    m.bidirectional = item.value("bidirectional", false);
    m.torch_bases = item.value("torch_bases", std::vector<std::string>{});
    modules.push_back(std::move(m));
  }
  return modules;
}

void check_no_quantization_modules(const std::vector<ModuleInfo>& modules) {
  std::string found;
  for (const auto& m : modules) {
    const auto& types = quantization_module_types();
    if (std::find(types.begin(), types.end(), m.type) != types.end())
      found += (found.empty() ? "" : ", ") + (m.name.empty() ? std::string("<root>") : m.name) + ": " + m.type;
  }
  if (!found.empty())
    fail(ErrorCode::kRuntime,
         "the model already contains quantization modules {" + found +
             "}; pass the original float model, not a calibration model");
}

PreparedModel prepare_model(onnx::ModelProto exported, std::vector<ModuleInfo> modules) {
  PreparedModel prepared;
  prepared.model = std::move(exported);
  validate_onnx_model(prepared.model, "exported model");
  onnx::GraphProto& graph = *prepared.model.mutable_graph();

  const std::set<std::string> reused = name_nodes_by_module(graph, modules);
  fold_weight_transposes(graph);
  fold_constant_inputs(graph);

  std::map<int64_t, int> weight_users;
  for (const auto& m : modules)
    if (m.has_weight && find_module_kind(m.type)) ++weight_users[m.weight_id];

  for (const auto& m : modules) {
    if (!is_quantizable_type(m.type)) {
      for (const auto& base : m.torch_bases)
        if (is_quantizable_type(base)) {
          prepared.notes.push_back("module '" + m.name + "' stays in float: its class " + m.type + " derives from " +
                                   base + ", and AMCT quantizes only the exact classes " +
                                   "(Conv2d, Linear, ...), not subclasses");
          break;
        }
      continue;
    }
    LayerInfo layer;
    layer.name = m.name;
    layer.module_type = m.type;
    layer.has_bias = m.has_bias;
    if (const onnx::NodeProto* node = find_node(graph, m.name)) {
      layer.op_type = node->op_type();
      describe_layer(graph, *node, layer);
    }
    layer.unsupported_reason = support_problem(graph, m, reused, weight_users);
    layer.supported = layer.unsupported_reason.empty();
    prepared.info.layers.push_back(std::move(layer));
  }
  prepared.info.modules = std::move(modules);
  return prepared;
}

}  // namespace amct
