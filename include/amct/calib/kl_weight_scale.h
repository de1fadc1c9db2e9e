// AdaRound's initial weight scale (docs/amct-reference.md#ada_quantize): a
// KL-divergence search over symmetric clipping windows of the weight
// histogram, per output channel or per tensor.
#pragma once

#include <span>
#include <vector>

#include "amct/channel_map.h"

namespace amct {

// One scale per channel of `channels` (channel_wise) or one for the tensor,
// each through process_scale; offsets are 0.
std::vector<float> kl_weight_scales(std::span<const float> weight, const ChannelMap& channels, bool channel_wise,
                                    int num_bits);

// The scale of one group of values (exposed for the tests).
float kl_weight_scale(std::span<const float> values, int num_bits);

}  // namespace amct
