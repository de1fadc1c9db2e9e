#include "amct/calib/value_range.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace amct {
namespace {

void expect_same(const std::vector<float>& values) {
  const ValueRange fast = scan_value_range(values);
  const ValueRange plain = scan_value_range_reference(values);
  EXPECT_EQ(fast.finite, plain.finite);
  if (plain.finite) {
    EXPECT_EQ(fast.min, plain.min);
    EXPECT_EQ(fast.max, plain.max);
  }
}

TEST(CalibValueRange, MatchesReferenceOnRandomData) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.5f, 3.0f);
  for (const size_t n : {1u, 2u, 7u, 64u, 1000u, 100003u}) {
    std::vector<float> values(n);
    for (float& v : values) v = normal(rng);
    expect_same(values);
  }
}

TEST(CalibValueRange, SignedZerosSubnormalsAndExtremes) {
  const float denorm = std::numeric_limits<float>::denorm_min();
  const float big = std::numeric_limits<float>::max();
  expect_same({-0.0f, 0.0f});
  expect_same({0.0f, -0.0f, -denorm});
  expect_same({denorm, -big, big});
  const ValueRange r = scan_value_range(std::vector<float>{3.0f, -denorm, 2.0f});
  EXPECT_EQ(r.min, -denorm);
  EXPECT_EQ(r.max, 3.0f);
}

TEST(CalibValueRange, DetectsEveryNonFiniteKind) {
  for (const float bad : {INFINITY, -INFINITY, NAN, -NAN}) {
    for (const size_t at : {0u, 5u, 999u}) {
      std::vector<float> values(1000, 1.0f);
      values[at] = bad;
      EXPECT_FALSE(scan_value_range(values).finite);
      EXPECT_FALSE(scan_value_range_reference(values).finite);
    }
  }
}

}  // namespace
}  // namespace amct
