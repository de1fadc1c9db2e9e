#include "amct/calib/value_range.h"

#include <bit>
#include <cmath>
#include <cstdint>

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
  int32_t key_min = 0;
  int32_t key_max = 0;
  key_range(values.data(), values.size(), key_min, key_max);
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
