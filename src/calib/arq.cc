#include "amct/calib/arq.h"

#include <algorithm>
#include <string>

#include "amct/calib/quant_math.h"
#include "amct/error.h"

namespace amct {
namespace {

int64_t row_length(size_t size, int64_t rows) {
  if (rows <= 0) invalid("weight rows must be positive, got " + std::to_string(rows));
  if (size == 0 || size % static_cast<size_t>(rows) != 0)
    invalid("weight of " + std::to_string(size) + " values cannot be viewed as " + std::to_string(rows) + " rows");
  return static_cast<int64_t>(size) / rows;
}

// Per-row scales may also be a single per-tensor scale.
float scale_of_row(std::span<const float> scales, int64_t rows, int64_t row) {
  if (scales.size() == 1) return scales[0];
  if (static_cast<int64_t>(scales.size()) != rows)
    invalid("expected 1 or " + std::to_string(rows) + " weight scales, got " + std::to_string(scales.size()));
  return scales[static_cast<size_t>(row)];
}

float quantize_value(float w, float scale, float qmin, float qmax) {
  return std::clamp(round_half_even(w / scale), qmin, qmax);
}

}  // namespace

WeightScales arq_quantize(std::span<const float> weight, int64_t rows, bool channel_wise, int num_bits) {
  check_num_bits(num_bits);
  const int64_t cols = row_length(weight.size(), rows);
  const int64_t groups = channel_wise ? rows : 1;
  const int64_t group_size = channel_wise ? cols : static_cast<int64_t>(weight.size());
  WeightScales result;
  for (int64_t g = 0; g < groups; ++g) {
    const auto group = weight.subspan(static_cast<size_t>(g * group_size), static_cast<size_t>(group_size));
    const auto [lo, hi] = std::minmax_element(group.begin(), group.end());
    const ScaleOffset so = calculate_scale_offset(*hi, *lo, /*asymmetric=*/false, num_bits);
    result.scale.push_back(so.scale);
    result.offset.push_back(so.offset);
  }
  return result;
}

void fake_quantize_weight(std::span<float> weight, int64_t rows, std::span<const float> scales, int num_bits) {
  check_num_bits(num_bits);
  const int64_t cols = row_length(weight.size(), rows);
  const auto qmin = static_cast<float>(quant_min(num_bits));
  const auto qmax = static_cast<float>(quant_max(num_bits));
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = scale_of_row(scales, rows, r);
    float* row = weight.data() + r * cols;
    for (int64_t c = 0; c < cols; ++c) row[c] = quantize_value(row[c], scale, qmin, qmax) * scale;
  }
}

std::vector<int8_t> quantize_weight_int8(std::span<const float> weight, int64_t rows, std::span<const float> scales,
                                         int num_bits) {
  check_num_bits(num_bits);
  if (num_bits > 8) invalid("int8 weights hold at most 8 bits, got num_bits " + std::to_string(num_bits));
  const int64_t cols = row_length(weight.size(), rows);
  const auto qmin = static_cast<float>(quant_min(num_bits));
  const auto qmax = static_cast<float>(quant_max(num_bits));
  std::vector<int8_t> out(weight.size());
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = scale_of_row(scales, rows, r);
    for (int64_t c = 0; c < cols; ++c) {
      const size_t i = static_cast<size_t>(r * cols + c);
      out[i] = static_cast<int8_t>(quantize_value(weight[i], scale, qmin, qmax));
    }
  }
  return out;
}

}  // namespace amct
