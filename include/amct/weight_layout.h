// Moving weight data between layouts (output-channel maps that move no data
// are in channel_map.h).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace amct {

// Row-major transpose of a [rows, cols] matrix.
std::vector<float> transpose_2d(std::span<const float> values, int64_t rows, int64_t cols);

}  // namespace amct
