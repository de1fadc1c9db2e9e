#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "amct/config.h"
#include "amct/error.h"
#include "amct/file_io.h"
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
      "OFMRQuant",      "ConvTranspose1dQAT", "CalibrationWrapper", "RecurrentCalibrationWrapper"};
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

// The quantizable class a module counts as ("" if none): its own, or with
// `quantize_subclasses` the nearest quantizable torch.nn class it derives from.
std::string layer_type_of(const ModuleInfo& module, bool quantize_subclasses) {
  if (is_quantizable_type(module.type)) return module.type;
  if (quantize_subclasses)
    for (const auto& base : module.torch_bases)
      if (is_quantizable_type(base)) return base;
  return "";
}

// Why a module of a quantizable class (or subclass) cannot be quantized ("" if it can).
std::string support_problem(const onnx::GraphProto& graph, const ModuleInfo& module, const std::set<std::string>& reused,
                            const std::map<int64_t, int>& weight_users, const WeightReaders& readers) {
  const ModuleKind* kind = find_module_kind(module.layer_type);
  if (kind && is_recurrent(*kind)) {
    // AMCT's module limits for RNNs: one layer, one direction, no dropout
    // between layers, no LSTM projection.
    if (module.num_layers != 1)
      return "num_layers is " + std::to_string(module.num_layers) + "; only single-layer " + module.layer_type +
             " modules are quantizable";
    if (module.bidirectional) return "it is bidirectional; only single-direction " + module.layer_type + " modules are quantizable";
    if (module.dropout != 0.0) return "its dropout is not 0";
    if (module.proj_size != 0) return "its proj_size is " + std::to_string(module.proj_size) + "; expected 0";
  }
  if (kind && kind->has_padding_mode && module.padding_mode != "zeros")
    return "padding_mode '" + module.padding_mode + "' is not supported (only 'zeros')";
  if (module.layer_type == "Conv3d" && !module.dilation.empty() && module.dilation[0] != 1)
    return "Conv3d with dilation[0] != 1 is not supported";
  if (reused.count(module.name)) return "the module is called more than once in forward()";
  const onnx::NodeProto* node = find_node(graph, module.name);
  if (!node) {
    const auto problem = readers.problems.find(module.name);
    return problem != readers.problems.end() ? problem->second : "the module is not executed by forward() on input_data";
  }
  if (module.has_weight && weight_users.count(module.weight_id) && weight_users.at(module.weight_id) > 1)
    return "its weight is shared with another layer";
  if (!exports_to(*kind, node->op_type()))
    return "it runs as an ONNX " + node->op_type() + " node, which is not how a " + module.layer_type + " is quantized";
  if (module.type != module.layer_type) {
    // Calibration finds a subclass's op by its weight argument (the
    // module's call may change the input first), which a weightless class lacks.
    if (!has_weight(*kind))
      return "its class " + module.type + " derives from " + module.layer_type +
             ", which has no weight by which calibration could find the op its forward runs; subclasses of " +
             module.layer_type + " stay in float";
    if (const std::string problem = standard_op_problem(*node, module); !problem.empty())
      return "its class " + module.type + " derives from " + module.layer_type + ", but " + problem;
  }
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
    m.dropout = item.value("dropout", 0.0);
    m.proj_size = item.value("proj_size", int64_t{0});
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

PreparedModel prepare_model(onnx::ModelProto exported, std::vector<ModuleInfo> modules,
                            const PrepareOptions& options) {
  PreparedModel prepared;
  prepared.model = std::move(exported);
  validate_onnx_model(prepared.model, "exported model");
  onnx::GraphProto& graph = *prepared.model.mutable_graph();

  for (auto& m : modules) m.layer_type = layer_type_of(m, options.quantize_subclasses);
  const std::set<std::string> reused = name_nodes_by_module(graph, modules);
  fold_weight_transposes(graph);
  // Before constant folding, which would turn a slice or other computation
  // of the weight into an initializer of its own and drop the parameter.
  const WeightReaders readers = name_weight_readers(graph, modules);
  fold_constant_inputs(graph);

  std::map<int64_t, int> weight_users;
  for (const auto& m : modules)
    if (m.has_weight && find_module_kind(m.layer_type)) ++weight_users[m.weight_id];

  for (const auto& m : modules) {
    if (m.layer_type.empty()) {
      for (const auto& base : m.torch_bases)
        if (is_quantizable_type(base)) {
          prepared.notes.push_back("module '" + m.name + "' stays in float: its class " + m.type + " derives from " +
                                   base + ", and quantize_subclasses is false (AMCT's behaviour: only the exact " +
                                   "classes Conv2d, Linear, ... are quantized)");
          break;
        }
      continue;
    }
    LayerInfo layer;
    layer.name = m.name;
    layer.module_type = m.layer_type;
    layer.use = readers.named.count(m.name) ? LayerUse::kWeightRead
                : m.type != m.layer_type    ? LayerUse::kSubclassCall
                                            : LayerUse::kCall;
    layer.has_bias = m.has_bias;
    if (const onnx::NodeProto* node = find_node(graph, m.name)) {
      layer.op_type = node->op_type();
      describe_layer(graph, *node, layer);
    }
    layer.unsupported_reason = support_problem(graph, m, reused, weight_users, readers);
    layer.supported = layer.unsupported_reason.empty();
    prepared.info.layers.push_back(std::move(layer));
  }
  prepared.info.modules = std::move(modules);
  return prepared;
}

PreparedModel prepare_model_for_config(onnx::ModelProto exported, std::vector<ModuleInfo> modules,
                                       const std::string& config_file, std::string& config_text) {
  config_text = read_file(config_file, "quant config file");
  PrepareOptions options;
  options.quantize_subclasses = config_quantizes_subclasses(config_text, config_file);
  return prepare_model(std::move(exported), std::move(modules), options);
}

}  // namespace amct
