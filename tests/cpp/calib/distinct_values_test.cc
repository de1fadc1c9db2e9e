#include "amct/calib/distinct_values.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

namespace amct {
namespace {

TEST(CalibDistinctValues, CountsMatchAMap) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> level(0, 255);
  DistinctValues distinct;
  std::map<float, int64_t> reference;
  for (int batch = 0; batch < 3; ++batch) {
    std::vector<float> values(5000);
    for (float& x : values) x = static_cast<float>(level(rng)) / 255.0f - 0.5f;
    values[7] = -0.0f;
    values[8] = 0.0f;
    values[9] = 0.0f;
    distinct.observe(values);
    for (const float x : values) ++reference[x];
  }
  ASSERT_TRUE(distinct.complete());
  const std::vector<std::pair<float, int64_t>> expected(reference.begin(), reference.end());
  EXPECT_EQ(distinct.sorted(), expected);
}

TEST(CalibDistinctValues, GivesUpBeyondCapacity) {
  DistinctValues distinct;
  std::vector<float> values;
  for (size_t i = 0; i < DistinctValues::kCapacity; ++i) values.push_back(static_cast<float>(i));
  distinct.observe(values);
  EXPECT_TRUE(distinct.complete());
  const size_t full = distinct.state_bytes();
  distinct.observe(std::vector<float>{1.0f, 2.0f, 0.5f});
  EXPECT_FALSE(distinct.complete());
  EXPECT_LT(distinct.state_bytes(), full);
}

}  // namespace
}  // namespace amct
