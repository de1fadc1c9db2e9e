#include "amct/record_check.h"

#include <cmath>
#include <cstdio>
#include <set>

#include "amct/calib/quant_math.h"
#include "amct/error.h"
#include "amct/onnx_graph.h"

namespace amct {
namespace {

// Bit width named by an act_type / wts_type / dst_type value, 0 if not allowed.
int bits_of(const std::string& value, std::initializer_list<int> allowed) {
  for (int bits : allowed)
    if (value == "INT" + std::to_string(bits)) return bits;
  return 0;
}

std::string allowed_list(std::initializer_list<int> allowed) {
  std::string out;
  for (int bits : allowed) out += (out.empty() ? "\"INT" : ", \"INT") + std::to_string(bits) + "\"";
  return out;
}

std::string float_text(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.9g", value);
  return buffer;
}

// Checks one record entry; every message names the record file and the layer.
class EntryChecker {
 public:
  EntryChecker(const std::string& origin, const std::string& layer)
      : where_("record file '" + origin + "', layer '" + layer + "': ") {}

  [[noreturn]] void reject(const std::string& message) const { invalid(where_ + message); }
  [[noreturn]] void reject_runtime(const std::string& message) const { fail(ErrorCode::kRuntime, where_ + message); }

  int bits(const std::string& field, const std::string& text, std::initializer_list<int> allowed) const {
    const int b = bits_of(text, allowed);
    if (b == 0) reject(field + " is \"" + text + "\"; expected one of " + allowed_list(allowed));
    return b;
  }

  void positive_finite(float scale, const std::string& field) const {
    if (!std::isfinite(scale) || scale <= 0.0f)
      reject(field + " is " + float_text(scale) + "; expected a finite value greater than 0");
  }

 private:
  std::string where_;
};

int64_t weight_channels(const QuantLayer& layer, const onnx::NodeProto& node) {
  if (layer.op_type == "ConvTranspose") return layer.weight_dims[1] * get_int_attribute(node, "group", 1);
  return layer.weight_dims[0];
}

void check_factors(const SingleLayerRecord& value, const EntryChecker& check, QuantLayer& layer,
                   const onnx::NodeProto& node) {
  // AMCT treats an entry without factors as DMQ-only; either way the
  // activation factors that save_model needs are not there yet.
  if (!value.has_scale_d() || !value.has_offset_d())
    check.reject_runtime(std::string(value.has_scale_d() ? "offset_d" : "scale_d") +
                         " is missing: calibration has not finished for this layer (save_model was called before "
                         "the calibration model ran batch_num batches)");
  if (value.shift_bit_size() > 0)
    check.reject("shift_bit is not supported for PyTorch models; delete it from the record");
  if (value.scale_w_size() == 0)
    check.reject("scale_w is missing; expected the weight scales written by quantize_model");
  if (value.offset_w_size() != value.scale_w_size())
    check.reject("offset_w has " + std::to_string(value.offset_w_size()) + " values; expected as many as scale_w (" +
                 std::to_string(value.scale_w_size()) + ")");

  const bool per_channel_allowed = layer.op_type == "Conv" || layer.op_type == "ConvTranspose";
  const int64_t channels = per_channel_allowed ? weight_channels(layer, node) : 1;
  const int64_t count = value.scale_w_size();
  if (count != 1 && count != channels)
    check.reject("scale_w has " + std::to_string(count) + " values; expected 1" +
                 (per_channel_allowed ? " (per tensor) or " + std::to_string(channels) + " (one per output channel)"
                                      : " (" + layer.op_type + " layers are quantized per tensor)"));

  check.positive_finite(value.scale_d(), "scale_d");
  // AscendQuant multiplies by 1/scale_d, which must be a finite float32 too.
  if (!std::isfinite(static_cast<float>(1.0 / value.scale_d())))
    check.reject("scale_d is " + float_text(value.scale_d()) + "; its reciprocal overflows float32");
  for (float s : value.scale_w()) check.positive_finite(s, "scale_w");
  for (int32_t o : value.offset_w())
    if (o != 0) check.reject("offset_w contains " + std::to_string(o) + "; expected 0 (weights are symmetric)");

  const int64_t lo = quant_min(layer.act_bits == 16 ? 16 : 8);
  const int64_t hi = quant_max(layer.act_bits == 16 ? 16 : 8);
  if (value.offset_d() < lo || value.offset_d() > hi)
    check.reject("offset_d is " + std::to_string(value.offset_d()) + "; expected a value in [" + std::to_string(lo) +
                 ", " + std::to_string(hi) + "] for INT" + std::to_string(layer.act_bits) + " activations");

  layer.data_scale = value.scale_d();
  layer.data_offset = value.offset_d();
  layer.weight_scale.assign(value.scale_w().begin(), value.scale_w().end());
  layer.weight_offset.assign(value.offset_w().begin(), value.offset_w().end());
}

void check_types(const SingleLayerRecord& value, const EntryChecker& check, QuantLayer& layer) {
  // Unset act_type / wts_type mean 8 bits; a dst_type overrides both (spec 5.4).
  layer.act_bits = value.has_act_type() ? check.bits("act_type", value.act_type(), {4, 8, 16}) : 8;
  layer.weight_bits = value.has_wts_type() ? check.bits("wts_type", value.wts_type(), {4, 6, 7, 8}) : 8;
  if (value.has_dst_type()) layer.act_bits = layer.weight_bits = check.bits("dst_type", value.dst_type(), {4, 8});
  const std::string& mode = value.fakequant_precision_mode();
  if (mode != "DEFAULT" && mode != "FORCE_FP16_QUANT")
    check.reject("fakequant_precision_mode is \"" + mode + "\"; expected \"DEFAULT\" or \"FORCE_FP16_QUANT\"");
  layer.fp16_dequant_scale = mode == "FORCE_FP16_QUANT";
  if (layer.op_type != "AveragePool" && layer.weight_bits == 4)
    check.reject("INT4 weights are not supported yet by save_model (weight packing); quantize this layer with 8 bits");
}

void check_op_data_type(const onnx::NodeProto& node, const EntryChecker& check, QuantLayer& layer) {
  const std::string type = get_string_attribute(node, "op_data_type", "float");
  if (type != "float" && type != "float16")
    check.reject("node attribute op_data_type is \"" + type + "\"; expected \"float\" or \"float16\"");
  layer.float16 = type == "float16";
}

const onnx::TensorProto* constant_weight(const onnx::GraphProto& graph, const onnx::NodeProto& node) {
  return node.input_size() > 1 ? resolve_constant(graph, node.input(1)) : nullptr;
}

}  // namespace

const QuantLayer* QuantPlan::find(const std::string& name) const {
  for (const auto& layer : layers)
    if (layer.name == name) return &layer;
  return nullptr;
}

std::string unquantizable_reason(const onnx::GraphProto& graph, const onnx::NodeProto& node) {
  const std::string& op = node.op_type();
  if (op == "LSTM" || op == "GRU") return op + " layers are not supported yet by save_model";
  if (op != "Conv" && op != "ConvTranspose" && op != "Gemm" && op != "MatMul" && op != "AveragePool")
    return "its op type " + op + " is not quantizable (expected Conv, ConvTranspose, Gemm, MatMul or AveragePool)";
  if (get_int_attribute(node, "is_reuse", 0) != 0) return "the module is called more than once";
  if (get_int_attribute(node, "input_dimension_reduction", 0) != 0) return "its input goes through an Unsqueeze";
  if (op == "AveragePool") return "";
  const onnx::TensorProto* weight = constant_weight(graph, node);
  const int rank = weight ? weight->dims_size() : 0;
  if (op == "Conv" || op == "ConvTranspose") {
    if (!weight) return "its weight (input 1) is not a constant";
    if (rank < 3 || rank > 5)
      return "its weight has rank " + std::to_string(rank) + "; expected a 1-D, 2-D or 3-D kernel";
    if (op == "ConvTranspose" && weight->dims(0) % get_int_attribute(node, "group", 1) != 0)
      return "its weight's first dimension is not divisible by group";
    return "";
  }
  if (op == "Gemm" && get_int_attribute(node, "transA", 0) != 0) return "Gemm with transA=1 is not quantizable";
  if (!weight || rank != 2) return "its weight (input 1) is not a constant 2-D tensor";
  return "";
}

QuantPlan check_record(const ScaleOffsetRecord& record, const onnx::GraphProto& graph, const std::string& record_origin,
                       const std::string& model_origin) {
  if (record.record_size() == 0)
    fail(ErrorCode::kRuntime, "record file '" + record_origin +
                                  "' has no layers to quantize; make sure calibration has finished before save_model");
  QuantPlan plan;
  std::set<std::string> seen;
  for (const auto& entry : record.record()) {
    if (!entry.has_key() || !entry.has_value())
      invalid("record file '" + record_origin + "': an entry lacks its " + (entry.has_key() ? "value" : "key") +
              "; expected record { key: \"<layer>\" value { ... } }");
    // AMCT keys may carry a ":<suffix>"; the layer is the part before it.
    const std::string name = entry.key().substr(0, entry.key().find(':'));
    const EntryChecker check(record_origin, name);
    if (!seen.insert(name).second) check.reject("the layer has more than one record entry; expected one");
    const onnx::NodeProto* node = find_node(graph, name);
    if (!node)
      fail(ErrorCode::kRuntime, "record file '" + record_origin + "': layer '" + name + "' is not a node of model '" +
                                    model_origin + "'; the record and the model do not match");
    const std::string reason = unquantizable_reason(graph, *node);
    if (!reason.empty()) check.reject_runtime("the layer cannot be quantized: " + reason);

    const SingleLayerRecord& value = entry.value();
    if (value.tensor_balance_factor_size() > 0)
      check.reject("tensor_balance_factor (DMQ balancing) is not supported yet by save_model");
    QuantLayer layer;
    layer.name = name;
    layer.op_type = node->op_type();
    if (layer.op_type != "AveragePool") layer.weight_dims = tensor_dims(*constant_weight(graph, *node));
    check_types(value, check, layer);
    check_factors(value, check, layer, *node);
    check_op_data_type(*node, check, layer);
    plan.layers.push_back(std::move(layer));
  }
  return plan;
}

QuantPlan read_quant_plan(const std::string& record_file, const onnx::GraphProto& graph,
                          const std::string& model_origin) {
  return check_record(read_record_file(record_file), graph, record_file, model_origin);
}

}  // namespace amct
