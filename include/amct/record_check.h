// Reading a calibrated record against the modified ONNX (docs/amct-reference.md#record-validation): every
// record entry is checked before save_model rewrites anything, and becomes
// one QuantLayer, the only source of quantization factors for the save passes.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "amct/calib/quant_math.h"
#include "amct/layer_kind.h"
#include "amct/quant_format.h"
#include "amct/record.h"
#include "amct/tensor_ranges.h"
#include "onnx/onnx.pb.h"

namespace amct {

// One record entry, checked against its node: the record model every save
// pass reads. It holds what AMCT's record can carry per layer; fields for
// features that save_model does not support yet stay empty.
struct QuantLayer {
  std::string name;     // node name = record key = torch module name
  std::string op_type;  // the node's op, a row of the layer-kind table
  const OpKind* kind = nullptr;
  // Input activations: scale_d / offset_d / act_type (dst_type overrides).
  float data_scale = 1.0f;
  int32_t data_offset = 0;
  QuantFormat act_format;
  // Weights: scale_w / offset_w / wts_type; 1 value (per tensor) or one per
  // output channel.
  std::vector<float> weight_scale;
  std::vector<int32_t> weight_offset;  // same length, all 0
  QuantFormat weight_format;
  // Recurrent input and weight of LSTM/GRU: scale_h / offset_h, scale_r.
  std::optional<ScaleOffset> recurrent_data;
  std::vector<float> recurrent_weight_scale;
  // DMQ: tensor_balance_factor, one per input channel.
  std::vector<float> balance_factor;
  // fakequant_precision_mode FORCE_FP16_QUANT: dequant scales keep only the
  // mantissa bits of a float16 (docs/amct-reference.md#dequant-parameter-packing).
  bool fp16_dequant_scale = false;
  bool float16 = false;               // op_data_type of the node is "float16"
  std::vector<int64_t> weight_dims;   // as in the modified ONNX; empty without a weight
};

struct QuantPlan {
  std::vector<QuantLayer> layers;  // record order
  // The full-INT8 QDQ model's extra tensors (TensorRole::kTensor entries of
  // the tensor ranges sidecar) by tensor name; empty for the layer-only one.
  std::map<std::string, TensorRange> tensor_ranges;

  const QuantLayer* find(const std::string& name) const;
};

// Validates `record` against `graph`; `record_origin` and `model_origin` name
// the files in messages. Layers without a record entry stay float.
QuantPlan check_record(const ScaleOffsetRecord& record, const onnx::GraphProto& graph,
                       const std::string& record_origin, const std::string& model_origin);

// read_record_file + check_record.
QuantPlan read_quant_plan(const std::string& record_file, const onnx::GraphProto& graph,
                          const std::string& model_origin);

}  // namespace amct
