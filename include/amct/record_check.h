// Reading a calibrated record against the modified ONNX (spec 5.4): every
// record entry is checked before save_model rewrites anything, and becomes
// one QuantLayer, the only source of quantization factors for the save passes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "amct/record.h"
#include "onnx/onnx.pb.h"

namespace amct {

struct QuantLayer {
  std::string name;     // node name = record key = torch module name
  std::string op_type;  // Conv, ConvTranspose, Gemm, MatMul or AveragePool
  float data_scale = 1.0f;
  int32_t data_offset = 0;
  int act_bits = 8;
  std::vector<float> weight_scale;    // 1 value (per tensor) or Cout values
  std::vector<int32_t> weight_offset;  // same length, all 0
  int weight_bits = 8;
  // fakequant_precision_mode FORCE_FP16_QUANT: dequant scales keep only the
  // mantissa bits of a float16 (spec 6.9).
  bool fp16_dequant_scale = false;
  bool float16 = false;               // op_data_type of the node is "float16"
  std::vector<int64_t> weight_dims;   // as in the modified ONNX; empty for AveragePool
};

struct QuantPlan {
  std::vector<QuantLayer> layers;  // record order

  const QuantLayer* find(const std::string& name) const;
};

// Why `node` cannot be quantized by save_model (node-based limits of spec
// 1.3), or "" when it can.
std::string unquantizable_reason(const onnx::GraphProto& graph, const onnx::NodeProto& node);

// Validates `record` against `graph`; `record_origin` and `model_origin` name
// the files in messages. Layers without a record entry stay float.
QuantPlan check_record(const ScaleOffsetRecord& record, const onnx::GraphProto& graph,
                       const std::string& record_origin, const std::string& model_origin);

// read_record_file + check_record.
QuantPlan read_quant_plan(const std::string& record_file, const onnx::GraphProto& graph,
                          const std::string& model_origin);

}  // namespace amct
