#include "amct/calib/value_range.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "amct/calib/parallel_slices.h"

namespace amct {
namespace {

__attribute__((target_clones("avx2", "default"))) void key_range(const float* values, size_t n, int32_t& lo,
                                                                 int32_t& hi) {
  int32_t key_min = INT32_MAX;
  int32_t key_max = INT32_MIN;
  for (size_t i = 0; i < n; ++i) {
    const int32_t key = float_order_key(values[i]);
    key_min = key < key_min ? key : key_min;
    key_max = key > key_max ? key : key_max;
  }
  lo = key_min;
  hi = key_max;
}

}  // namespace

ValueRange scan_value_range(std::span<const float> values) {
  const size_t slices = default_slices(values.size());
  std::vector<int32_t> slice_min(slices, INT32_MAX);
  std::vector<int32_t> slice_max(slices, INT32_MIN);
  run_slices(values.size(), slices, 1, [&](size_t slice, size_t begin, size_t end) {
    key_range(values.data() + begin, end - begin, slice_min[slice], slice_max[slice]);
  });
  const int32_t key_min = *std::min_element(slice_min.begin(), slice_min.end());
  const int32_t key_max = *std::max_element(slice_max.begin(), slice_max.end());
  ValueRange range;
  range.finite = key_min > float_order_key(-INFINITY) && key_max < float_order_key(INFINITY);
  range.min = float_from_order_key(key_min);
  range.max = float_from_order_key(key_max);
  return range;
}

ValueRange scan_value_range_reference(std::span<const float> values) {
  ValueRange range{values[0], values[0], true};
  for (const float x : values) {
    if (!std::isfinite(x)) range.finite = false;
    if (x < range.min) range.min = x;
    if (x > range.max) range.max = x;
  }
  return range;
}

}  // namespace amct
