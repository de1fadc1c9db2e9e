#include <algorithm>

#include "amct/calib/arq.h"
#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/model_prep.h"
#include "amct/onnx_graph.h"
#include "amct/quantize.h"
#include "amct/weight_layout.h"

namespace amct {
namespace {

// Config values the JSON accepts but the engine cannot act on yet.
void refuse_unimplemented(const LayerQuantConfig& layer, const std::string& config_file) {
  const std::string where = "config_file '" + config_file + "', layer '" + layer.name + "': ";
  if (layer.dmq_balancer_param)
    fail(ErrorCode::kRuntime, where + "dmq_balancer_param (DMQ balancing, quantize_preprocess) is not supported yet");
  if (layer.weight.wts_algo == "ada_quantize")
    fail(ErrorCode::kRuntime, where + "wts_algo 'ada_quantize' is not supported yet; use 'arq_quantize'");
  if (layer.weight.num_bits == 4)
    fail(ErrorCode::kRuntime, where + "4-bit weights are not supported yet; use num_bits 6, 7 or 8");
  if (layer.activation.num_bits == 4)
    fail(ErrorCode::kRuntime, where + "4-bit activations are not supported yet; use num_bits 8 or 16");
}

// ARQ on one layer's weight initializer: writes the fake-quantized weight
// back into the graph and returns the record entry plus torch-layout data.
QuantizedLayer quantize_layer_weight(onnx::GraphProto& graph, onnx::NodeProto& node, const LayerInfo& layer,
                                     const LayerQuantConfig& config, SingleLayerRecord& record) {
  QuantizedLayer out;
  out.name = layer.name;
  out.module_type = layer.module_type;
  if (node.op_type() == "AveragePool") {
    record.add_scale_w(1.0f);
    record.add_offset_w(0);
    return out;
  }
  onnx::TensorProto* weight = find_initializer(graph, node.input(1));
  if (!weight) fail(ErrorCode::kRuntime, "layer '" + layer.name + "': its weight is not an initializer of the graph");
  const std::vector<int64_t> dims = tensor_dims(*weight);
  std::vector<float> values = tensor_to_floats(*weight);
  const bool channel_wise = config.weight.channel_wise;
  const int bits = config.weight.num_bits;

  // Rows of the quantization view are output channels.
  std::vector<float> rows_view;
  int64_t cout = dims[0];
  if (node.op_type() == "ConvTranspose") {
    cout = layer.cout;
    rows_view = deconv_to_cout_major(values, dims, layer.groups);
  } else {
    rows_view = values;
  }
  const int64_t rows = channel_wise ? cout : 1;
  const WeightScales scales = arq_quantize(rows_view, rows, channel_wise, bits);
  fake_quantize_weight(rows_view, rows, scales.scale, bits);
  values = node.op_type() == "ConvTranspose" ? cout_major_to_deconv(rows_view, dims, layer.groups) : rows_view;
  set_float_tensor(*weight, values);

  for (float s : scales.scale) record.add_scale_w(s);
  for (int32_t o : scales.offset) record.add_offset_w(o);
  record.set_wts_type("INT" + std::to_string(bits));

  // torch keeps Linear weights as [out, in]; the graph may hold [in, out].
  const bool in_out_layout = node.op_type() == "MatMul" ||
                             (node.op_type() == "Gemm" && get_int_attribute(node, "transB", 0) == 0);
  if (in_out_layout) {
    out.weight = transpose_2d(values, dims[0], dims[1]);
    out.weight_shape = {dims[1], dims[0]};
  } else {
    out.weight = std::move(values);
    out.weight_shape = dims;
  }
  if ((node.op_type() == "Conv" || node.op_type() == "ConvTranspose" || node.op_type() == "Gemm") &&
      node.input_size() > 2 && !node.input(2).empty()) {
    if (const onnx::TensorProto* bias = resolve_constant(graph, node.input(2))) out.bias = tensor_to_floats(*bias);
  }
  return out;
}

}  // namespace

QuantizeResult quantize_model(const std::string& config_file, const std::string& modified_onnx_file,
                              const std::string& record_file, const std::string& onnx_bytes,
                              std::vector<ModuleInfo> modules) {
  check_output_file_name(modified_onnx_file, "modfied_onnx_file");
  check_output_file_name(record_file, "record_file");
  check_no_quantization_modules(modules);
  PreparedModel prepared = prepare_model(onnx_bytes, std::move(modules));
  onnx::GraphProto& graph = *prepared.model.mutable_graph();

  QuantizeResult result;
  result.config = parse_config_file(config_file, prepared.info);
  std::vector<const LayerQuantConfig*> enabled;
  for (const auto& layer : result.config.layers) {
    if (!layer.quant_enable) continue;
    refuse_unimplemented(layer, config_file);
    enabled.push_back(&layer);
  }
  if (enabled.empty())
    fail(ErrorCode::kRuntime, "config_file '" + config_file + "' enables no layer (every quant_enable is false)");

  if (result.config.do_fusion)
    result.fused = fuse_conv_batchnorm(graph, prepared.info, result.config.skip_fusion_layers, result.notes);

  for (const auto& layer : prepared.info.layers) {
    if (!layer.supported) result.notes.push_back("layer '" + layer.name + "' stays in float: " + layer.unsupported_reason);
  }

  // Layers in named_modules() order, as AMCT writes the record.
  for (const auto& layer : prepared.info.layers) {
    const auto it = std::find_if(enabled.begin(), enabled.end(), [&](const auto* c) { return c->name == layer.name; });
    if (it == enabled.end()) continue;
    onnx::NodeProto* node = find_node(graph, layer.name);
    auto* entry = result.record.add_record();
    entry->set_key(layer.name);
    result.layers.push_back(quantize_layer_weight(graph, *node, layer, **it, *entry->mutable_value()));
    const ModuleInfo* module = prepared.info.find_module(layer.name);
    set_string_attribute(*node, "op_data_type", module && module->dtype == "float16" ? "float16" : "float");
  }

  save_onnx_model(prepared.model, modified_onnx_file);
  write_record_file(record_file, result.record);
  return result;
}

}  // namespace amct
