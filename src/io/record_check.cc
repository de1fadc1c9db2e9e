#include "amct/record_check.h"

#include <cmath>
#include <cstdio>
#include <set>

#include "amct/dmq_record.h"
#include "amct/error.h"
#include "amct/int4_packing.h"
#include "amct/layer_graph.h"
#include "amct/number_format.h"
#include "amct/onnx_graph.h"

namespace amct {
namespace {

// Checks one record entry; every message names the record file and the layer.
class EntryChecker {
 public:
  EntryChecker(const std::string& origin, const std::string& layer)
      : where_("record file '" + origin + "', layer '" + layer + "': ") {}

  const std::string& where() const { return where_; }
  [[noreturn]] void reject(const std::string& message) const { invalid(where_ + message); }
  [[noreturn]] void reject_runtime(const std::string& message) const { fail(ErrorCode::kRuntime, where_ + message); }

  QuantFormat format(const std::string& field, const std::string& text, std::initializer_list<int> allowed) const {
    const std::optional<QuantFormat> parsed = QuantFormat::parse(text, allowed);
    if (!parsed) reject(field + " is \"" + text + "\"; expected one of " + format_names(allowed));
    return *parsed;
  }

  // A scale must be a positive normal float32: a subnormal one loses its
  // precision, and AscendQuant's 1/scale overflows.
  void scale(float value, const std::string& field) const {
    if (!std::isfinite(value) || !std::isnormal(value) || value <= 0.0f)
      reject(field + " is " + format_message_number(value) + "; expected a finite value greater than 0 (a normal float32)");
  }

  void offset(int64_t value, QuantFormat format, const std::string& field) const {
    if (value < format.min() || value > format.max())
      reject(field + " is " + std::to_string(value) + "; expected a value in [" + std::to_string(format.min()) +
             ", " + std::to_string(format.max()) + "] for " + format.name() + " activations");
  }

 private:
  std::string where_;
};

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

  const bool per_channel_allowed = layer.kind->per_channel;
  const int64_t channels =
      per_channel_allowed && !layer.weight_dims.empty() ? node_channel_map(node, layer.weight_dims).channels() : 1;
  const int64_t count = value.scale_w_size();
  const int64_t gates = layer.op_type == "LSTM" ? 4 : layer.op_type == "GRU" ? 3 : 0;
  if (count != 1 && count != channels && count != gates)
    check.reject("scale_w has " + std::to_string(count) + " values; expected 1" +
                 (per_channel_allowed ? " (per tensor) or " + std::to_string(channels) + " (one per output channel)"
                                      : " (" + layer.op_type + " layers are quantized per tensor)") +
                 (gates > 0 ? " or " + std::to_string(gates) + " (per gate)" : ""));

  check.scale(value.scale_d(), "scale_d");
  for (float s : value.scale_w()) check.scale(s, "scale_w");
  for (int32_t o : value.offset_w())
    if (o != 0) check.reject("offset_w contains " + std::to_string(o) + "; expected 0 (weights are symmetric)");
  // AMCT accepts an INT4 offset_d anywhere in the INT8 range, but the
  // zero point must be one of the format's integers: outside [-8, 7] the
  // fake-quant clip moves every value, and the deploy model's INT4 grid
  // cannot hold it (docs/amct-reference.md#record-validation).
  check.offset(value.offset_d(), layer.act_format, "offset_d");

  layer.data_scale = value.scale_d();
  layer.data_offset = value.offset_d();
  layer.weight_scale.assign(value.scale_w().begin(), value.scale_w().end());
  layer.weight_offset.assign(value.offset_w().begin(), value.offset_w().end());
}

void check_types(const SingleLayerRecord& value, const EntryChecker& check, QuantLayer& layer) {
  // Unset act_type / wts_type mean 8 bits; a dst_type overrides both.
  if (value.has_act_type()) layer.act_format = check.format("act_type", value.act_type(), {4, 8, 16});
  if (value.has_wts_type()) layer.weight_format = check.format("wts_type", value.wts_type(), {4, 6, 7, 8});
  if (value.has_dst_type()) layer.act_format = layer.weight_format = check.format("dst_type", value.dst_type(), {4, 8});
  const std::string& mode = value.fakequant_precision_mode();
  if (mode != "DEFAULT" && mode != "FORCE_FP16_QUANT")
    check.reject("fakequant_precision_mode is \"" + mode + "\"; expected \"DEFAULT\" or \"FORCE_FP16_QUANT\"");
  layer.fp16_dequant_scale = mode == "FORCE_FP16_QUANT";
}

// AMCT reads a scale list of exactly one value per gate as per-gate
// "per tensor" scales; the passes take them as one scale per gate row.
std::vector<float> gate_rows(std::vector<float> scales, int gates, int64_t rows) {
  if (static_cast<int64_t>(scales.size()) != gates || rows == gates) return scales;
  std::vector<float> out;
  for (float s : scales) out.insert(out.end(), static_cast<size_t>(rows / gates), s);
  return out;
}

// LSTM/GRU: the hidden-state factors scale_h/offset_h (calibration) and the
// recurrence weight factors scale_r/offset_r (quantize_model); other layers
// must not carry them.
void check_recurrent(const SingleLayerRecord& value, const EntryChecker& check, QuantLayer& layer) {
  const bool has_fields =
      value.has_scale_h() || value.has_offset_h() || value.scale_r_size() > 0 || value.offset_r_size() > 0;
  if (layer.kind->recurrent_input < 0) {
    if (has_fields)
      check.reject("scale_h/offset_h/scale_r/offset_r belong to LSTM/GRU layers; this layer is " + layer.op_type);
    return;
  }
  if (!value.has_scale_h() || !value.has_offset_h())
    check.reject_runtime(std::string(value.has_scale_h() ? "offset_h" : "scale_h") +
                         " is missing: the hidden state of this " + layer.op_type +
                         " was not calibrated (save_model was called before the calibration model ran batch_num "
                         "batches)");
  if (value.scale_r_size() == 0)
    check.reject("scale_r is missing; expected the recurrence weight scales written by quantize_model");
  if (value.offset_r_size() != value.scale_r_size())
    check.reject("offset_r has " + std::to_string(value.offset_r_size()) + " values; expected as many as scale_r (" +
                 std::to_string(value.scale_r_size()) + ")");
  const int gates = layer.op_type == "LSTM" ? 4 : 3;
  const int64_t rows = layer.weight_dims.size() == 3 ? layer.weight_dims[1] : 0;
  const int64_t count = value.scale_r_size();
  if (count != 1 && count != gates && count != rows)
    check.reject("scale_r has " + std::to_string(count) + " values; expected 1 (per tensor), " +
                 std::to_string(gates) + " (per gate) or " + std::to_string(rows) + " (one per gate row)");
  check.scale(value.scale_h(), "scale_h");
  for (float s : value.scale_r()) check.scale(s, "scale_r");
  for (int32_t o : value.offset_r())
    if (o != 0) check.reject("offset_r contains " + std::to_string(o) + "; expected 0 (weights are symmetric)");
  check.offset(value.offset_h(), layer.act_format, "offset_h");
  layer.recurrent_data = ScaleOffset{value.scale_h(), value.offset_h()};
  layer.recurrent_weight_scale = gate_rows({value.scale_r().begin(), value.scale_r().end()}, gates, rows);
  layer.weight_scale = gate_rows(std::move(layer.weight_scale), gates, rows);
  layer.weight_offset.assign(layer.weight_scale.size(), 0);
}

void check_op_data_type(const onnx::NodeProto& node, const EntryChecker& check, QuantLayer& layer) {
  const std::string type = get_string_attribute(node, "op_data_type", "float");
  if (type != "float" && type != "float16")
    check.reject("node attribute op_data_type is \"" + type + "\"; expected \"float\" or \"float16\"");
  layer.float16 = type == "float16";
}

}  // namespace

const QuantLayer* QuantPlan::find(const std::string& name) const {
  for (const auto& layer : layers)
    if (layer.name == name) return &layer;
  return nullptr;
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
    // Every save pass rewires the layer's output 0.
    if (node->output_size() == 0 || node->output(0).empty())
      invalid("model '" + model_origin + "': node '" + name + "' (" + node->op_type() +
              ") has no output; a quantized layer needs one");
    std::string reason;
    try {
      reason = unquantizable_reason(graph, *node);
    } catch (const Error& e) {
      // A malformed attribute (say a FLOAT group) of the layer's node.
      check.reject(e.what());
    }
    if (!reason.empty()) check.reject_runtime("the layer cannot be quantized: " + reason);

    const SingleLayerRecord& value = entry.value();
    QuantLayer layer;
    layer.name = name;
    layer.op_type = node->op_type();
    layer.kind = node_kind(*node);
    if (const onnx::TensorProto* weight = layer_weight(graph, *node)) layer.weight_dims = tensor_dims(*weight);
    if (value.tensor_balance_factor_size() > 0)
      layer.balance_factor = checked_balance_factors(value, graph, *node, check.where());
    check_types(value, check, layer);
    // AMCT raises this RuntimeError while packing the deploy weights;
    // quantize_model refuses such a layer, so only a record written
    // elsewhere gets here.
    if (layer.weight_format.bits() == 4 && !layer.weight_dims.empty())
      if (const std::string unpackable = int4_unpackable_reason(*node, layer.weight_dims); !unpackable.empty())
        check.reject_runtime(unpackable + "; quantize this layer with 8 bits");
    check_factors(value, check, layer, *node);
    check_recurrent(value, check, layer);
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
