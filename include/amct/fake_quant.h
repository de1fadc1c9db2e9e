// The torch fake-quant model of accuracy_based_auto_calibration
// (docs/amct-reference.md#accuracy_based_auto_calibration): each quantized layer sees its input
// quantized with the record's scale_d / offset_d and a bias on the INT32 grid, the numbers the
// fake-quant ONNX model computes, so the evaluator measures what the deployed model will do.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "amct/quant_format.h"
#include "amct/record.h"

namespace amct {

struct ActivationQuant {
  float scale = 1.0f;
  int32_t offset = 0;
  QuantFormat format;
};

// (clamp(round(x * (1 / scale)) + offset, min, max) - offset) * scale per
// element, with 1 / scale computed in double and stored as float32 as the
// fake-quant ONNX model's Mul holds it, and round half to even.
void fake_quantize_activation(std::span<const float> input, std::span<float> output, const ActivationQuant& quant);

// What the fake-quant model needs of one record entry.
struct LayerFakeQuant {
  ActivationQuant input;
  std::vector<float> bias;  // the bias on the scale_d * scale_w grid; empty when the layer has none
};

// The entry of `layer` in a calibrated record, with `bias` (the BN-fused
// float bias, empty when none) quantized as save_model does. Throws kRuntime
// naming the layer when the record has no scale_d for it, and save_model's
// bias overflow error.
LayerFakeQuant layer_fake_quant(const ScaleOffsetRecord& record, const std::string& layer,
                                std::span<const float> bias);

}  // namespace amct
