#include "amct/calib/quant_math.h"

#include <algorithm>
#include <string>

#include "amct/error.h"

namespace amct {

void check_num_bits(int num_bits) {
  if (num_bits < 2 || num_bits > 16)
    invalid("num_bits must be between 2 and 16, got " + std::to_string(num_bits));
}

float process_scale(float scale) {
  if (scale < kFltEpsilon) scale = 1.0f;
  if (!std::isfinite(scale) || !std::isfinite(1.0f / scale))
    fail(ErrorCode::kRuntime, "Param scale has invalid value inf, nan or zeros!");
  return scale;
}

ScaleOffset calculate_scale_offset(float max_value, float min_value, bool asymmetric, int num_bits) {
  check_num_bits(num_bits);
  ScaleOffset result;
  if (asymmetric) {
    max_value = std::max(max_value, 0.0f);
    min_value = std::min(min_value, 0.0f);
    const float scope = static_cast<float>((int64_t{1} << num_bits) - 1);
    const float half_scope = std::ceil(scope / 2.0f);
    float scale = (max_value - min_value) / scope;
    float offset = max_value != min_value ? -half_scope - min_value / scale : -half_scope;
    // process_scale: a degenerate range keeps the quantized zero at Q_min.
    if (scale < kFltEpsilon) {
      scale = 1.0f;
      offset = static_cast<float>(quant_min(num_bits));
    }
    if (!std::isfinite(offset))
      fail(ErrorCode::kRuntime, "Param scale has invalid value inf, nan or zeros!");
    result.scale = process_scale(scale);
    result.offset = static_cast<int32_t>(round_half_even(offset));
  } else {
    const float abs_max = std::fabs(max_value);
    const float abs_min = std::fabs(min_value);
    // The negative side may use the extra code -2^(b-1).
    const int64_t scope = abs_max < abs_min ? -quant_min(num_bits) : quant_max(num_bits);
    result.scale = process_scale(std::max(abs_max, abs_min) / static_cast<float>(scope));
    result.offset = 0;
  }
  return result;
}

}  // namespace amct
