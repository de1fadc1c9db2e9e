// ARQ weight quantization (docs/amct-reference.md#arq): symmetric min/max
// scales per output channel or per tensor.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "amct/channel_map.h"

namespace amct {

struct WeightScales {
  std::vector<float> scale;     // one per channel (channel_wise) or one
  std::vector<int32_t> offset;  // always 0: weights are symmetric
};

// Scales over the channels of `channels` (or over all values).
WeightScales arq_quantize(std::span<const float> weight, const ChannelMap& channels, bool channel_wise, int num_bits);

// `weight` viewed as row-major [rows, size/rows], rows = output channels.
WeightScales arq_quantize(std::span<const float> weight, int64_t rows, bool channel_wise, int num_bits);

}  // namespace amct
