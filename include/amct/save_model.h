// save_model (spec 2.5, 7): turns the modified ONNX of quantize_model plus a
// calibrated record file into AMCT's deploy and fake-quant models.
#pragma once

#include <string>
#include <vector>

namespace amct {

struct SaveOptions {
  bool deploy = true;      // <prefix>_deploy_model.onnx (AscendQuant/AscendDequant)
  bool fake_quant = true;  // <prefix>_fake_quant_model.onnx (standard ONNX ops)
};

// Paths of the files written, in the order above.
std::vector<std::string> save_model(const std::string& modified_onnx_file, const std::string& record_file,
                                    const std::string& save_path, const SaveOptions& options = {});

// The output file name for `kind` ("deploy" or "fake_quant") under AMCT's
// naming: "<dir>/<prefix>_<kind>_model.onnx", or "<dir>/<kind>_model.onnx"
// when save_path ends in '/'.
std::string output_model_path(const std::string& save_path, const std::string& kind);

}  // namespace amct
