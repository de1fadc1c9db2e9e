// save_model (spec 2.5, 7): turns the modified ONNX of quantize_model plus a
// calibrated record file into AMCT's deploy and fake-quant models, and a
// standard QDQ model for ONNX Runtime / TensorRT.
//
// The QDQ model (<prefix>_qdq_model.onnx) keeps the modified model's opset
// (13 or later is required) and dynamic axes. Each quantized layer L reads
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

#include <string>
#include <vector>

namespace amct {

struct SaveOptions {
  bool deploy = true;      // <prefix>_deploy_model.onnx (AscendQuant/AscendDequant)
  bool fake_quant = true;  // <prefix>_fake_quant_model.onnx (standard ONNX ops)
  bool qdq = true;         // <prefix>_qdq_model.onnx (QuantizeLinear/DequantizeLinear)
};

// Paths of the files written, in the order above.
std::vector<std::string> save_model(const std::string& modified_onnx_file, const std::string& record_file,
                                    const std::string& save_path, const SaveOptions& options = {});

// The output file name for `kind` ("deploy", "fake_quant" or "qdq") under AMCT's
// naming: "<dir>/<prefix>_<kind>_model.onnx", or "<dir>/<kind>_model.onnx"
// when save_path ends in '/'.
std::string output_model_path(const std::string& save_path, const std::string& kind);

}  // namespace amct
