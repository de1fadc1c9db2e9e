// Parity between the float, fake-quant and QDQ models (amct compare): error
// metrics over two float arrays, and the graph edit that exposes each
// quantized layer's result as an extra graph output.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "onnx/onnx.pb.h"

namespace amct {

struct ParityMetrics {
  double cosine = 0.0;         // 1 when both arrays are all zero
  double sqnr_db = 0.0;        // 10 log10(sum ref^2 / sum (ref - other)^2); +inf when equal
  double max_abs_error = 0.0;
  // The step an 8-bit quantization of the reference would have,
  // (max - min) / 255, and the share of elements that differ by at most that.
  double step = 0.0;
  double within_step = 0.0;
  int64_t count = 0;
};

// Both arrays have the same length (checked; the message names `what`).
ParityMetrics parity_metrics(std::span<const float> reference, std::span<const float> other, const std::string& what);

// Layers a fake-quant model quantizes: L for every node "<L>.fakedequant.mul".
std::vector<std::string> fake_quant_layers(const onnx::ModelProto& fake_quant);

struct LayerTensor {
  std::string layer;
  std::string tensor;  // the layer's float result in that model
};

// The float result of each listed layer in `model`: the output of node L,
// followed through its single-consumer chain of nodes named "<L>.*" (and a
// MatMul's bias Add), i.e. after dequantization in the fake-quant and QDQ
// models. Layers without a node of that name are left out.
std::vector<LayerTensor> layer_result_tensors(const onnx::ModelProto& model, const std::vector<std::string>& layers);

// Adds `tensors` that are not graph outputs yet as float graph outputs.
void expose_tensors(onnx::ModelProto& model, const std::vector<LayerTensor>& tensors);

struct FedInput {
  std::string input;   // the new graph input of the QDQ model
  std::string tensor;  // the reference model's tensor to feed it with
};

// Each model computes its layer results from its own upstream results, so
// one-step rounding differences between the fake-quant and QDQ models
// (QuantizeLinear divides by scale_d where fake-quant multiplies by
// float32(1 / scale_d); an integer kernel requantizes in one rounding where
// fake-quant dequantizes and quantizes again) propagate to every layer
// below and add up. To measure a layer on its own, every QuantizeLinear
// "<L>.input_quant" of a listed layer in the QDQ model is made to read a new
// float graph input "<tensor>.reference" in place of the tensor it
// quantizes; the caller feeds it the value of FedInput::tensor in
// `reference` (the fake-quant model): the tensor of that name where both
// models compute it with the same node, the reference's result of a layer
// where the tensor is that layer's result. A layer whose input is its
// producer's requantized result has no such node and runs on that
// producer's result, which is fed in turn. Other layers are left as they are.
std::vector<FedInput> feed_reference_inputs(onnx::ModelProto& qdq, const onnx::ModelProto& reference,
                                            const std::vector<std::string>& layers);

}  // namespace amct
