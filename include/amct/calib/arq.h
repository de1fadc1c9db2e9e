// ARQ weight quantization (spec 6.3): symmetric min/max scales per output
// channel (rows of a [rows, cols] view) or per tensor, and fake quantization.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace amct {

struct WeightScales {
  std::vector<float> scale;     // one per row (channel_wise) or one
  std::vector<int32_t> offset;  // always 0: weights are symmetric
};

// `weight` is row-major [rows, size/rows], rows = Cout.
WeightScales arq_quantize(std::span<const float> weight, int64_t rows, bool channel_wise, int num_bits);

// Replaces each value by clamp(round(w/s), qmin, qmax) * s, in place.
void fake_quantize_weight(std::span<float> weight, int64_t rows, std::span<const float> scales, int num_bits);

// The integers clamp(round(w/s), qmin, qmax) as int8 (num_bits <= 8).
std::vector<int8_t> quantize_weight_int8(std::span<const float> weight, int64_t rows, std::span<const float> scales,
                                         int num_bits);

}  // namespace amct
