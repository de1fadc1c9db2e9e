// ConvTranspose weights are [Cin, Cout/g, k...]; per-channel quantization is
// per Cout, so they are regrouped to Cout-first (spec 6.4) and back.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace amct {

// [Cin, Cout/g, k...] -> [Cout, Cin/g, k...]
std::vector<float> deconv_to_cout_major(std::span<const float> weight, const std::vector<int64_t>& dims, int64_t groups);
// [Cout, Cin/g, k...] -> [Cin, Cout/g, k...]; `dims` are the original ConvTranspose dims.
std::vector<float> cout_major_to_deconv(std::span<const float> weight, const std::vector<int64_t>& dims, int64_t groups);

// Row-major transpose of a [rows, cols] matrix.
std::vector<float> transpose_2d(std::span<const float> values, int64_t rows, int64_t cols);

}  // namespace amct
