// Turning a layer's float weights and biases into integers: the one place
// that quantize_model and the deploy, fake-quant and QDQ writers use, so all
// of them compute the same integers (docs/amct-reference.md#insertweightquant,
// #bias-quantization).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "amct/calib/adaround.h"
#include "amct/channel_map.h"
#include "amct/config.h"
#include "amct/quant_format.h"

namespace amct {

// Weight factors and the integers they give.
struct QuantizedWeight {
  std::vector<float> scale;     // one per output channel, or one
  std::vector<int32_t> offset;  // same length; weights are symmetric, so 0
  std::vector<int32_t> integers;  // same layout as the float weight
};

// A weight quantization algorithm (wts_algo). ARQ implements it today; an
// algorithm that needs calibration data receives it through its own
// constructor, so the interface stays the weight alone.
class WeightQuantizer {
 public:
  virtual ~WeightQuantizer() = default;
  virtual QuantizedWeight quantize(std::span<const float> weight, const ChannelMap& channels, bool channel_wise,
                                   QuantFormat format) const = 0;
  // quantize(), then each value of `weight` replaced by the float its
  // integer stands for; the integers are not returned. An algorithm whose
  // factors come before its integers (ARQ) never holds them: with weights
  // of GBs, an int32 copy would cost as much as the weight.
  virtual QuantizedWeight fake_quantize_in_place(std::span<float> weight, const ChannelMap& channels,
                                                 bool channel_wise, QuantFormat format) const;
};

// What ada_quantize needs beyond the weight: the layer's op over the inputs
// it saw, its bias and the activation that follows it. The weight handed to
// quantize() must be in the op's layout (AdaLayerShape).
struct AdaRoundLayer {
  const AdaLayerOp* op = nullptr;
  std::span<const float> bias;
  FollowingActivation activation;
};

// The quantizer of a layer's config. ada_quantize needs `ada`; without it
// (or for an unknown algorithm) this throws kRuntime naming the layer.
std::unique_ptr<WeightQuantizer> make_weight_quantizer(const WeightQuantParams& params, const std::string& layer,
                                                       const AdaRoundLayer* ada = nullptr);

// clamp(round(w / scale[channel]), min, max), the division in float32 as
// AMCT does it. `scale` has one value or channels.channels() values. A
// non-finite weight throws kInvalidArgument naming `layer` and `tensor`.
std::vector<int32_t> integerize_weight(std::span<const float> weight, const ChannelMap& channels,
                                       std::span<const float> scale, QuantFormat format, const std::string& layer,
                                       const std::string& tensor);

// integerize_weight's integers plus `shift`, one byte each (the storage of
// every weight format up to 8 bits), without an int32 copy of the weight.
std::string integerize_weight_bytes(std::span<const float> weight, const ChannelMap& channels,
                                    std::span<const float> scale, QuantFormat format, const std::string& layer,
                                    const std::string& tensor, int32_t shift = 0);

// dequantize_weight(integerize_weight(weight, ...)) written over `weight`.
void fake_quantize_weight(std::span<float> weight, const ChannelMap& channels, std::span<const float> scale,
                          QuantFormat format, const std::string& layer, const std::string& tensor);

// integers * scale[channel]: the float values the integers stand for.
std::vector<float> dequantize_weight(std::span<const int32_t> integers, const ChannelMap& channels,
                                     std::span<const float> scale);

// Per output channel float32(scale_w[c] * scale_d), the scale of the
// integer accumulator.
std::vector<float> dequant_scales(std::span<const float> weight_scale, float data_scale);

// round(b[c] / dequant_scale[c]) in double; a value outside INT32 throws
// kRuntime naming the layer. `dequant_scale` has one value or one per bias
// value.
std::vector<int32_t> integerize_bias(std::span<const float> bias, std::span<const float> dequant_scale,
                                     const std::string& layer);

}  // namespace amct
