// save_model (docs/amct-reference.md#save_model, #save_model-passes): turns the modified ONNX of quantize_model plus a
// calibrated record file into AMCT's deploy and fake-quant models, and a
// standard QDQ model for ONNX Runtime / TensorRT.
//
// The deploy and fake-quant models keep the modified model's opset (11 as
// AMCT writes it). The QDQ model (<prefix>_qdq_model.onnx) needs per-axis
// DequantizeLinear, so it is written at the modified model's opset or 13,
// whichever is higher, unless qdq_opset asks for another one; dynamic axes
// are kept. Each quantized layer L reads
// QuantizeLinear "<L>.input_quant" (scale_d; zero point offset_d + 128 as
// UINT8, the same integers as AMCT's INT8 with offset_d) and
// DequantizeLinear "<L>.input_dequant"; weights are INT8 initializers with
// per-channel scale_w (axis 0 Conv, 1 ConvTranspose) or a per-tensor scale
// (Gemm, MatMul); biases INT32 with scale scale_w * scale_d. Where the
// result feeds only quantized layers with one set of factors it is
// requantized with them, so ONNX Runtime fuses QLinearConv / QGemm /
// QLinearAveragePool. A block-upsampling ConvTranspose (kernel == stride) is
// written as a 1x1 Conv plus DepthToSpace; a Conv whose result has no such
// factors becomes ConvInteger with AMCT's dequantization (the record has no
// output scales). Layers with INT16/INT4 activations or float16 data stay
// float in this model. See src/graph/passes/qdq_*_pass.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace amct {

struct SaveOptions {
  bool deploy = true;      // <prefix>_deploy_model.onnx (AscendQuant/AscendDequant)
  bool fake_quant = true;  // <prefix>_fake_quant_model.onnx (standard ONNX ops)
  bool qdq = true;         // <prefix>_qdq_model.onnx (QuantizeLinear/DequantizeLinear)
  // The QDQ model is an extra of ours: when it was not asked for explicitly
  // (AMCT's three-argument call), a model it cannot be written for is
  // skipped with a warning instead of failing the call.
  bool qdq_optional = false;
  int64_t qdq_opset = 0;   // 0: the lowest opset that holds it (13 or the model's)
  // kAuto: the full-INT8 QDQ model when calibration wrote tensor ranges
  // ("<record_file>.ranges.json" with "tensor" entries), else the layer-only
  // one; kFull requires those ranges; kLayers quantizes the layers only.
  enum class QdqMode { kAuto, kFull, kLayers };
  QdqMode qdq_mode = QdqMode::kAuto;
  // A model whose serialized size would reach this many bytes has its largest
  // initializers moved to external data files until it fits (AMCT's rule,
  // onnx_external_data.h); smaller values are for tests and tools.
  size_t external_data_limit = 2'000'000'000;
};

struct SaveResult {
  std::vector<std::string> written;   // paths, in the order of SaveOptions
  std::vector<std::string> warnings;  // outputs skipped, and why
};

SaveResult save_model(const std::string& modified_onnx_file, const std::string& record_file,
                      const std::string& save_path, const SaveOptions& options = {});

// The output file name for `kind` ("deploy", "fake_quant" or "qdq") under AMCT's
// naming: "<dir>/<prefix>_<kind>_model.onnx", or "<dir>/<kind>_model.onnx"
// when save_path ends in '/'.
std::string output_model_path(const std::string& save_path, const std::string& kind);

}  // namespace amct
