// The tensors the full-INT8 QDQ model quantizes beyond the layers' inputs
// (docs/design-notes.md#full-int8-qdq-model). quantize_model lists them from
// the modified ONNX, calibration measures them (TensorRole::kTensor entries of
// the tensor ranges sidecar), and qdq_tensor_pass puts QuantizeLinear /
// DequantizeLinear on each, so that ONNX Runtime runs the ops between the
// layers as integer kernels (QLinearAdd, QLinearMul, QLinearConcat, ...).
#pragma once

#include <string>
#include <unordered_set>
#include <vector>

#include "onnx/onnx.pb.h"

namespace amct {

// `integer_layers`: the node names of the layers whose QDQ form quantizes
// their input (8-bit activations). With `activation_matmuls`, both inputs of
// a MatMul between two activations (attention scores, attention x values)
// are listed too. Tensors come in the order their producers run, each once.
std::vector<std::string> full_qdq_tensors(onnx::GraphProto& graph, const std::unordered_set<std::string>& integer_layers,
                                          bool activation_matmuls);

}  // namespace amct

namespace amct {

// The modified ONNX of `model_file` as ONNX Runtime runs it for calibration:
// `tensors` are added to the graph outputs (Runtime returns only outputs) and
// AMCT's op_data_type attributes dropped (Runtime refuses attributes its
// schemas do not list). Serialized; a model of 2 GiB or more is refused.
std::string qdq_observation_model(const std::string& model_file, const std::vector<std::string>& tensors);

}  // namespace amct
