// The min/max pass every activation collector makes over a batch, with the
// finiteness check folded in so inf/nan cost no extra pass.
#pragma once

#include <span>

namespace amct {

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
