#include <algorithm>
#include <map>
#include <optional>
#include <span>
#include <unordered_set>

#include "amct/ada_layer_graph.h"
#include "amct/calib/dmq_balance.h"
#include "amct/dmq_record.h"
#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/int4_packing.h"
#include "amct/layer_graph.h"
#include "amct/model_prep.h"
#include "amct/onnx_external_data.h"
#include "amct/onnx_graph.h"
#include "amct/opset_conversion.h"
#include "amct/quantize.h"
#include "amct/qdq_tensors.h"
#include "amct/rnn_weights.h"
#include "amct/weight_layout.h"
#include "amct/weight_quant.h"
#include "amct/weights_fingerprint.h"

namespace amct {
namespace {

// Config values the JSON accepts but the engine cannot act on yet. An
// unimplemented weight algorithm is refused by make_weight_quantizer.
void refuse_unimplemented(const LayerQuantConfig& layer, const std::string& config_file) {
  const std::string where = "config_file '" + config_file + "', layer '" + layer.name + "': ";
  if (layer.activation.num_bits == 4)
    fail(ErrorCode::kRuntime, where + "4-bit activations are not supported yet; use num_bits 8 or 16");
}

// INT4 weights are packed in pairs along the input channels in the deploy
// model. AMCT only fails in save_model, after calibration; refusing here
// says so before any data is spent.
void refuse_unpackable_int4(const onnx::GraphProto& graph, const onnx::NodeProto& node,
                            const LayerQuantConfig& layer, const std::string& config_file) {
  if (layer.weight.num_bits != 4) return;
  const onnx::TensorProto* weight = layer_weight(graph, node);
  if (!weight) return;
  if (const std::string reason = int4_unpackable_reason(node, tensor_dims(*weight)); !reason.empty())
    fail(ErrorCode::kRuntime, "config_file '" + config_file + "', layer '" + layer.name + "': " + reason +
                                  "; set num_bits 8 in its weight_quant_params (AMCT's simple config does this "
                                  "itself)");
}

// Where a layer's weight comes from once the modified ONNX is written: its
// initializer, in the graph's layout ([in, out] when `transpose`).
struct WeightSource {
  size_t layer;  // index in QuantizeResult::layers
  std::string initializer;
  bool transpose = false;
};

// The layer's shape and bias in the torch module's layout, for the
// calibration model; the weight itself follows (hand_over_weights).
QuantizedLayer torch_layout(const onnx::GraphProto& graph, const onnx::NodeProto& node, const LayerInfo& layer,
                            const std::vector<int64_t>& dims, bool& transpose) {
  QuantizedLayer out;
  out.name = layer.name;
  out.module_type = layer.module_type;
  out.use = layer.use;
  // torch keeps Linear weights as [out, in]; the graph may hold [in, out].
  const OpKind& kind = *node_kind(node);
  transpose = kind.layout == WeightLayout::kInOut ||
              (kind.layout == WeightLayout::kGemm && get_int_attribute(node, "transB", 0) == 0);
  out.weight_shape = transpose ? std::vector<int64_t>{dims[1], dims[0]} : dims;
  // A layer used through its weight is never BN-fused, so its bias is
  // unchanged; and the op may take a bias other than the module's, which
  // must not be written over the module's.
  const int bias = kind.bias_input;
  if (layer.use != LayerUse::kWeightRead && bias >= 0 && node.input_size() > bias && !node.input(bias).empty())
    if (const onnx::TensorProto* t = resolve_constant(graph, node.input(bias))) out.bias = tensor_to_floats(*t);
  return out;
}

// Quantizes one layer's weight initializer: the record gets the factors and
// the graph (and the calibration model) the fake-quantized weight, except
// where AMCT keeps the float weight (ConvTranspose, unless asked otherwise).
// A DMQ layer's weight is first multiplied by its balance factors along the
// input channels, so ARQ sees the balanced weight.
// A DMQ layer computes on x / s with the weight W * s: AdaRound has to
// reconstruct (W * s)(x / s), so its inputs are divided as the calibration
// model divides them (Linear: the last axis; Conv, ConvTranspose: axis 1).
LayerInputs balanced_inputs(const LayerInputs& inputs, bool channels_last, std::span<const float> balance,
                            const std::string& layer) {
  const size_t rank = inputs.shape.size();
  const size_t axis = channels_last ? rank - 1 : 1;
  if (rank < 2 || inputs.shape[axis] != static_cast<int64_t>(balance.size()))
    invalid("layer '" + layer + "': its inputs have " + (rank < 2 ? "rank " + std::to_string(rank) :
            std::to_string(inputs.shape[axis]) + " channels on axis " + std::to_string(axis)) + "; expected " +
            std::to_string(balance.size()) + " channels, one per DMQ balance factor");
  int64_t inner = 1;
  for (size_t d = axis + 1; d < rank; ++d) inner *= inputs.shape[d];
  LayerInputs out = inputs;
  divide_input_channels(out.values, inputs.shape[axis], inner, balance);
  return out;
}

// ada_quantize runs in torch's weight layout, where its op is defined; the
// integers come back in the graph's layout.
QuantizedWeight ada_quantize_weight(onnx::GraphProto& graph, const onnx::NodeProto& node, const LayerInfo& layer,
                                    const LayerQuantConfig& config, std::span<const float> values,
                                    const std::vector<int64_t>& dims, const ChannelMap& channels,
                                    const LayerInputs& inputs, std::span<const float> balance) {
  const AdaLayerGraph ada = ada_layer_graph(graph, node, dims, layer.name);
  const bool channels_last = ada.shape.op == AdaLayerShape::Op::kLinear;
  const std::unique_ptr<AdaLayerOp> op =
      balance.empty() ? make_ada_layer_op(ada.shape, inputs, layer.name)
                      : make_ada_layer_op(ada.shape, balanced_inputs(inputs, channels_last, balance, layer.name),
                                          layer.name);
  const AdaRoundLayer problem{op.get(), ada.bias, ada.activation};
  const QuantFormat format = QuantFormat::signed_bits(config.weight.num_bits);
  if (!ada.transposed)
    return make_weight_quantizer(config.weight, layer.name, &problem)->quantize(values, channels,
                                                                                config.weight.channel_wise, format);
  const int64_t cin = dims[0], cout = dims[1];
  QuantizedWeight out = make_weight_quantizer(config.weight, layer.name, &problem)
                            ->quantize(transpose_2d(values, cin, cout), ChannelMap::rows(cout, cin * cout),
                                       config.weight.channel_wise, format);
  std::vector<int32_t> graph_layout(out.integers.size());
  for (int64_t o = 0; o < cout; ++o)
    for (int64_t i = 0; i < cin; ++i) graph_layout[i * cout + o] = out.integers[o * cin + i];
  out.integers = std::move(graph_layout);
  return out;
}

// The weight is rewritten where it lies in the graph (float_values_in_place):
// a layer of GBs is held once, not as floats, integers and a copy.
QuantizedLayer quantize_layer_weight(onnx::GraphProto& graph, onnx::NodeProto& node, const LayerInfo& layer,
                                     const LayerQuantConfig& config, const QuantizeOptions& options,
                                     const std::map<std::string, LayerInputs>& layer_inputs,
                                     SingleLayerRecord& record, WeightsFingerprint& fingerprint,
                                     std::optional<WeightSource>& source) {
  const OpKind& kind = *node_kind(node);
  if (kind.recurrent_input >= 0) return quantize_rnn_weights(graph, node, layer, config, record, fingerprint);
  if (kind.weight_input < 0) {
    // A weightless layer records the unit weight scale AMCT writes.
    record.add_scale_w(1.0f);
    record.add_offset_w(0);
    fingerprint.add_layer(layer.name, {});
    QuantizedLayer out;
    out.name = layer.name;
    out.module_type = layer.module_type;
    out.use = layer.use;
    return out;
  }
  onnx::TensorProto* weight = find_initializer(graph, node.input(kind.weight_input));
  if (!weight) fail(ErrorCode::kRuntime, "layer '" + layer.name + "': its weight is not an initializer of the graph");
  const std::vector<int64_t> dims = tensor_dims(*weight);
  const std::span<float> values = float_values_in_place(*weight);
  const std::span<const float> balance(record.tensor_balance_factor().data(), record.tensor_balance_factor_size());
  if (!balance.empty()) scale_weight_input_channels(values, layer_input_channel_map(graph, node), balance);
  const ChannelMap channels = node_channel_map(node, dims);
  const QuantFormat format = QuantFormat::signed_bits(config.weight.num_bits);
  const bool ada = config.weight.wts_algo == "ada_quantize";
  // save_model integerizes the modified ONNX's weights with scale_w again,
  // so AdaRound's choices survive only as fake-quantized weights: an ADA
  // ConvTranspose is written quantized, as AMCT writes ADA's W_q.
  const bool keep_float = kind.layout == WeightLayout::kDeconv && !options.fake_quantize_deconv_weights && !ada;
  std::vector<float> fake_quant;
  QuantizedWeight quantized;
  if (ada) {
    quantized = ada_quantize_weight(graph, node, layer, config, values, dims, channels, layer_inputs.at(layer.name),
                                    balance);
    const std::vector<float> dequantized = dequantize_weight(quantized.integers, channels, quantized.scale);
    std::copy(dequantized.begin(), dequantized.end(), values.begin());
  } else if (keep_float) {
    quantized = make_weight_quantizer(config.weight, layer.name)
                    ->quantize(values, channels, config.weight.channel_wise, format);
    fake_quant = dequantize_weight(quantized.integers, channels, quantized.scale);
  } else {
    quantized = make_weight_quantizer(config.weight, layer.name)
                    ->fake_quantize_in_place(values, channels, config.weight.channel_wise, format);
  }
  std::vector<int32_t>().swap(quantized.integers);

  for (float s : quantized.scale) record.add_scale_w(s);
  for (int32_t o : quantized.offset) record.add_offset_w(o);
  record.set_wts_type(format.name());

  fingerprint.add_layer(layer.name, values);
  bool transpose = false;
  QuantizedLayer out = torch_layout(graph, node, layer, dims, transpose);
  source = WeightSource{0, weight->name(), transpose};
  // ConvTranspose weights have the same layout in ONNX and torch.
  if (keep_float) out.fake_quant_weight = std::move(fake_quant);
  out.balance_factor.assign(balance.begin(), balance.end());
  return out;
}

// Moves each quantized weight out of the (written) modified ONNX into its
// layer, turned into torch's layout where it lies: the calibration model gets
// the weights without a copy. An initializer read by two layers is copied
// for the second.
void hand_over_weights(onnx::GraphProto& graph, std::vector<QuantizedLayer>& layers,
                       const std::vector<WeightSource>& sources) {
  std::map<std::string, size_t> taken;  // initializer -> first layer's source
  for (size_t i = 0; i < sources.size(); ++i) {
    const WeightSource& source = sources[i];
    const auto [first, fresh] = taken.emplace(source.initializer, i);
    std::string& weight = layers[source.layer].weight;
    if (fresh)
      weight.swap(*find_initializer(graph, source.initializer)->mutable_raw_data());
    else
      weight = layers[sources[first->second].layer].weight;  // still in the graph's layout
  }
  for (const WeightSource& source : sources) {
    if (!source.transpose) continue;
    QuantizedLayer& layer = layers[source.layer];
    const std::span<float> values(reinterpret_cast<float*>(layer.weight.data()), layer.weight.size() / sizeof(float));
    // weight_shape is torch's [out, in]; the graph held [in, out].
    transpose_2d_in_place(values, layer.weight_shape[1], layer.weight_shape[0]);
  }
}

// The inputs of every ada_quantize layer, from one run of the model on
// input_data (AMCT samples them from input_data too).
std::map<std::string, LayerInputs> collect_ada_inputs(const std::vector<const LayerQuantConfig*>& enabled,
                                                      const ModelInfo& info, const std::string& config_file,
                                                      const QuantizeOptions& options) {
  std::vector<std::string> names;
  for (const LayerQuantConfig* layer : enabled) {
    if (layer->weight.wts_algo != "ada_quantize") continue;
    const ModuleInfo* module = info.find_module(layer->name);
    // The class the module counts as: a subclass of Linear (MultiheadAttention's
    // out_proj) or of Conv2d is modelled by its base class's op.
    const std::string type = module ? module->layer_type : "";
    if (type != "Conv2d" && type != "ConvTranspose2d" && type != "Linear")
      fail(ErrorCode::kRuntime, "config_file '" + config_file + "', layer '" + layer->name +
                                    "': ada_quantize supports Conv2d, ConvTranspose2d and Linear layers, not " + type);
    names.push_back(layer->name);
  }
  if (names.empty()) return {};
  if (!options.collect_layer_inputs)
    fail(ErrorCode::kRuntime, "layer '" + names[0] + "': ada_quantize needs the layer's inputs, and none were given");
  std::map<std::string, LayerInputs> inputs = options.collect_layer_inputs(names);
  for (const std::string& name : names)
    if (!inputs.count(name))
      fail(ErrorCode::kRuntime, "layer '" + name + "': ada_quantize needs the layer's inputs, but the model did not "
                                "run it on input_data");
  return inputs;
}

std::vector<FusedFloatConv> fused_float_convs(const onnx::GraphProto& graph, const std::vector<FusedBatchNorm>& fused,
                                              const std::vector<QuantizedLayer>& layers) {
  std::unordered_set<std::string> quantized;
  for (const auto& layer : layers) quantized.insert(layer.name);
  std::vector<FusedFloatConv> convs;
  for (const auto& pair : fused) {
    if (quantized.count(pair.conv)) continue;
    const onnx::NodeProto* node = find_node(graph, pair.conv);
    // Fusion gave the conv its weight and bias initializers (a bias one if it had none).
    const onnx::TensorProto* weight = node ? find_initializer(graph, node->input(1)) : nullptr;
    const onnx::TensorProto* bias = node && node->input_size() > 2 ? find_initializer(graph, node->input(2)) : nullptr;
    if (!weight || !bias)
      fail(ErrorCode::kRuntime, "internal error: the BatchNorm-fused conv '" + pair.conv +
                                    "' lost its weight or bias initializer");
    convs.push_back({pair.conv, tensor_to_floats(*weight), tensor_to_floats(*bias)});
  }
  return convs;
}

}  // namespace

QuantizeResult quantize_model(const std::string& config_file, const std::string& modified_onnx_file,
                              const std::string& record_file, onnx::ModelProto exported,
                              std::vector<ModuleInfo> modules, const QuantizeOptions& options) {
  if (options.opset_version < QuantizeOptions::kMinOpset || options.opset_version > QuantizeOptions::kMaxOpset)
    invalid("opset_version " + std::to_string(options.opset_version) + " is not supported; expected " +
            std::to_string(QuantizeOptions::kMinOpset) + " to " + std::to_string(QuantizeOptions::kMaxOpset) +
            " (Ascend's ATC reads 11 to 15)");
  if (options.external_data_limit == 0) invalid("quantize_model: external_data_limit must be at least 1 byte");
  check_output_file_name(modified_onnx_file, "modfied_onnx_file");
  check_output_file_name(record_file, "record_file");
  check_no_quantization_modules(modules);
  std::string config_text;
  PreparedModel prepared = prepare_model_for_config(std::move(exported), std::move(modules), config_file, config_text);
  onnx::GraphProto& graph = *prepared.model.mutable_graph();

  QuantizeResult result;
  result.config = parse_config_text(config_text, config_file, prepared.info);
  std::vector<const LayerQuantConfig*> enabled;
  for (const auto& layer : result.config.layers) {
    if (!layer.quant_enable) continue;
    refuse_unimplemented(layer, config_file);
    enabled.push_back(&layer);
  }
  if (enabled.empty())
    fail(ErrorCode::kRuntime, "config_file '" + config_file + "' enables no layer (every quant_enable is false)");
  std::vector<std::string> dmq_layers;
  for (const auto* layer : enabled)
    if (layer->dmq_balancer_param) dmq_layers.push_back(layer->name);
  // With DMQ the record starts from quantize_preprocess's factors.
  if (!dmq_layers.empty())
    result.record = read_balance_record(record_file, config_file, dmq_layers, graph, result.notes);
  const std::map<std::string, LayerInputs> layer_inputs = collect_ada_inputs(enabled, prepared.info, config_file, options);

  if (result.config.do_fusion)
    result.fused = fuse_conv_batchnorm(graph, prepared.info, result.config.skip_fusion_layers, result.notes);

  result.notes.insert(result.notes.end(), prepared.notes.begin(), prepared.notes.end());
  for (const auto& layer : prepared.info.layers) {
    if (!layer.supported) result.notes.push_back("layer '" + layer.name + "' stays in float: " + layer.unsupported_reason);
  }

  // Layers in named_modules() order, as AMCT writes the record.
  WeightsFingerprint fingerprint;
  std::vector<WeightSource> weight_sources;
  for (const auto& layer : prepared.info.layers) {
    const auto it = std::find_if(enabled.begin(), enabled.end(), [&](const auto* c) { return c->name == layer.name; });
    if (it == enabled.end()) {
      if (layer.supported)
        result.notes.push_back("layer '" + layer.name + "' stays in float: config_file '" + config_file +
                               "' does not enable it (quant_enable is false, or the layer has no entry)");
      continue;
    }
    onnx::NodeProto* node = find_node(graph, layer.name);
    refuse_unpackable_int4(graph, *node, **it, config_file);
    SingleLayerRecord* entry = find_record(result.record, layer.name);
    if (!entry) {
      auto* added = result.record.add_record();
      added->set_key(layer.name);
      entry = added->mutable_value();
    }
    std::optional<WeightSource> source;
    result.layers.push_back(
        quantize_layer_weight(graph, *node, layer, **it, options, layer_inputs, *entry, fingerprint, source));
    if (source) {
      source->layer = result.layers.size() - 1;
      weight_sources.push_back(*source);
    }
    const ModuleInfo* module = prepared.info.find_module(layer.name);
    set_string_attribute(*node, "op_data_type", module && module->dtype == "float16" ? "float16" : "float");
  }

  result.fused_float_convs = fused_float_convs(graph, result.fused, result.layers);

  // Last, so every pass above sees the exporter's op forms; names survive.
  convert_opset(prepared.model, options.opset_version);
  if (options.full_qdq_tensors) {
    std::unordered_set<std::string> integer_layers;
    for (const auto* layer : enabled)
      if (layer->activation.num_bits == 8) integer_layers.insert(layer->name);
    result.qdq_tensors =
        full_qdq_tensors(*prepared.model.mutable_graph(), integer_layers, result.config.quantize_activation_matmuls);
  }
  result.weights_fingerprint = fingerprint.hex();
  set_model_fingerprint(prepared.model, result.weights_fingerprint);
  // One set: a record beside a modified ONNX of another run is what the
  // fingerprint exists to catch, so never leave one by failing half way.
  FileSet files;
  ExternalDataRule external;
  external.limit = options.external_data_limit;
  stage_onnx_model_keeping_data(files, prepared.model, modified_onnx_file, external);
  files.stage(record_file, record_to_text(result.record), "record file");
  files.stage(record_sidecar_path(record_file), record_sidecar_json(result.weights_fingerprint), "record sidecar");
  files.commit();
  hand_over_weights(*prepared.model.mutable_graph(), result.layers, weight_sources);
  return result;
}

}  // namespace amct
