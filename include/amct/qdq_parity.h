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

}  // namespace amct
