// Moving weight data between layouts (output-channel maps that move no data
// are in channel_map.h).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace amct {

// Row-major transpose of a [rows, cols] matrix.
std::vector<float> transpose_2d(std::span<const float> values, int64_t rows, int64_t cols);

// The same transpose where the values lie (no second matrix): a weight of
// GBs is held once. Equal to transpose_2d; tested against it.
void transpose_2d_in_place(std::span<float> values, int64_t rows, int64_t cols);

}  // namespace amct
