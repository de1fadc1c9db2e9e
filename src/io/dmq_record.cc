#include "amct/dmq_record.h"

#include <algorithm>
#include <cfloat>
#include <cstdio>
#include <filesystem>

#include "amct/error.h"
#include "amct/layer_graph.h"
#include "amct/number_format.h"
#include "amct/onnx_graph.h"

namespace amct {
namespace {

const char kEmptyRecord[] =
    "config_file indicates dmq_balancer, but record_file is empty. please check quant_preprocess and calibration "
    "is done!";

}  // namespace

InputChannelMap layer_input_channel_map(const onnx::GraphProto& graph, const onnx::NodeProto& node) {
  const OpKind* kind = node_kind(node);
  const onnx::TensorProto* weight = layer_weight(graph, node);
  if (!kind || !weight) invalid("layer '" + node.name() + "' (" + node.op_type() + ") has no constant weight to balance");
  try {
    return InputChannelMap::for_weight(kind->layout, tensor_dims(*weight), get_int_attribute(node, "group", 1),
                                       get_int_attribute(node, "transB", 0) != 0);
  } catch (const Error& e) {
    invalid("layer '" + node.name() + "': " + e.what());
  }
}

std::vector<float> checked_balance_factors(const SingleLayerRecord& value, const onnx::GraphProto& graph,
                                           const onnx::NodeProto& node, const std::string& where) {
  const OpKind* kind = node_kind(node);
  if (!kind || kind->weight_input < 0 || kind->recurrent_input >= 0)
    invalid(where + "tensor_balance_factor is not allowed on " + node.op_type() +
            " layers; DMQ balances Conv, ConvTranspose, Gemm and MatMul layers");
  const InputChannelMap map = layer_input_channel_map(graph, node);
  const int64_t count = value.tensor_balance_factor_size();
  if (count != map.channels())
    invalid(where + "tensor_balance_factor has " + std::to_string(count) + " values; expected " +
            std::to_string(map.channels()) + " (one per input channel of the layer)");
  std::vector<float> factors(value.tensor_balance_factor().begin(), value.tensor_balance_factor().end());
  for (size_t c = 0; c < factors.size(); ++c)
    if (!(factors[c] >= FLT_EPSILON && factors[c] <= 1.0f / FLT_EPSILON))
      invalid(where + "tensor_balance_factor[" + std::to_string(c) + "] is " + format_message_number(factors[c]) +
              "; expected a value in [FLT_EPSILON, 1/FLT_EPSILON] = [" + format_message_number(FLT_EPSILON) + ", " +
              format_message_number(1.0f / FLT_EPSILON) + "]");
  return factors;
}

ScaleOffsetRecord read_balance_record(const std::string& record_file, const std::string& config_file,
                                      const std::vector<std::string>& dmq_layers, const onnx::GraphProto& graph,
                                      std::vector<std::string>& notes) {
  std::error_code ec;
  if (!std::filesystem::exists(record_file, ec))
    fail(ErrorCode::kRuntime, std::string(kEmptyRecord) + " (record_file '" + record_file + "' does not exist)");
  const ScaleOffsetRecord stored = read_record_file(record_file);
  if (stored.record_size() == 0)
    fail(ErrorCode::kRuntime, std::string(kEmptyRecord) + " (record_file '" + record_file + "' has no records)");

  ScaleOffsetRecord out;
  for (const auto& entry : stored.record()) {
    const std::string name = entry.key().substr(0, entry.key().find(':'));
    const std::string where = "record file '" + record_file + "', layer '" + name + "': ";
    if (std::find(dmq_layers.begin(), dmq_layers.end(), name) == dmq_layers.end()) {
      notes.push_back(where + "the entry is dropped: config_file '" + config_file +
                      "' does not enable DMQ (dmq_balancer_param) for this layer");
      continue;
    }
    if (find_record(out, name)) invalid(where + "the layer has more than one record entry; expected one");
    if (entry.value().tensor_balance_factor_size() == 0) continue;  // reported below as missing
    const onnx::NodeProto* node = find_node(graph, name);
    if (!node) fail(ErrorCode::kRuntime, where + "the layer is not a node of the model; the record and the model "
                                                 "do not match");
    const std::vector<float> factors = checked_balance_factors(entry.value(), graph, *node, where);
    auto* kept = out.add_record();
    kept->set_key(name);
    for (float s : factors) kept->mutable_value()->add_tensor_balance_factor(s);
  }
  for (const auto& layer : dmq_layers)
    if (!find_record(out, layer))
      invalid("config indicates dmq_balancer in layer: " + layer +
              ", but no tensor_balance_factor found in record_file '" + record_file +
              "'; run quantize_preprocess and one forward of the model it returns first");
  return out;
}

}  // namespace amct
