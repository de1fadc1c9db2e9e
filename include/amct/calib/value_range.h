// The min/max pass every activation collector makes over a batch, with the
// finiteness check folded in so inf/nan cost no extra pass.
#pragma once

#include <bit>
#include <cstdint>
#include <span>

namespace amct {

// Maps a float to an int32 whose signed order is the float order (-0 just
// below +0, NaNs beyond the infinities). Integer min/max reductions vectorize
// without -ffast-math, unlike float ones, and the infinities bound the finite
// keys, so one reduction yields both the range and the finiteness check.
inline int32_t float_order_key(float x) {
  const auto bits = std::bit_cast<int32_t>(x);
  return bits ^ ((bits >> 31) & 0x7fffffff);
}

inline float float_from_order_key(int32_t key) { return std::bit_cast<float>(key ^ ((key >> 31) & 0x7fffffff)); }

struct ValueRange {
  float min = 0.0f;
  float max = 0.0f;
  bool finite = true;  // false: some value is inf or nan (min/max then meaningless)
};

// `values` must be non-empty.
ValueRange scan_value_range(std::span<const float> values);

// Plain element-by-element version of scan_value_range, the test reference.
ValueRange scan_value_range_reference(std::span<const float> values);

}  // namespace amct
