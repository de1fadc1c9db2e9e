// Calibrated ranges of tensors that AMCT's record has no field for (layer
// outputs, and the tensors of the full-INT8 QDQ model's integer kernels). They travel in a
// sidecar file beside the record, "<record_file>.ranges.json", so the record
// stays exactly what AMCT reads and writes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace amct {

// What a calibrated tensor is to its layer.
enum class TensorRole {
  kInput,      // the layer's input: scale_d / offset_d in the record
  kRecurrent,  // LSTM/GRU hidden state: scale_h / offset_h in the record
  kOutput,     // the layer's output: the sidecar
  kTensor,     // a tensor of the modified ONNX named by `layer`: the sidecar
};

const char* tensor_role_name(TensorRole role);

struct TensorRange {
  std::string layer;
  TensorRole role = TensorRole::kOutput;
  float scale = 1.0f;
  int32_t offset = 0;
  int bits = 8;
};

std::string tensor_ranges_path(const std::string& record_file);

// The file's text: JSON {"version": 1, "ranges": [{"layer", "role", "scale", "offset", "bits"}]}.
// The calibrator writes it in one FileSet with the record.
std::string tensor_ranges_json(const std::vector<TensorRange>& ranges);
// Errors name the file and the entry; a missing file is kNotFound.
std::vector<TensorRange> read_tensor_ranges(const std::string& path);
// The same from the file's text; `path` names it in messages.
std::vector<TensorRange> parse_tensor_ranges(const std::string& text, const std::string& path);

}  // namespace amct
